"""Adapters in the Hugging Face PEFT folder format, both ways.

A PEFT LoRA adapter is a folder with two files:
  * `adapter_config.json`: `peft_type: "LORA"`, `r`, `lora_alpha`, `lora_dropout`,
    `target_modules`, `use_rslora`, `use_dora`, `init_lora_weights`, `modules_to_save`, ...
  * `adapter_model.safetensors`: `base_model.model.<module path>.lora_A.weight` (r x in),
    `...lora_B.weight` (out x r), `...lora_magnitude_vector` (DoRA, out), for an embedding
    `...lora_embedding_A` / `...lora_embedding_B`, and the tensors of the modules trained in
    full under `base_model.model.<param name>`.

The math is the same as ours (scaling alpha/r, or alpha/sqrt(r) with `use_rslora`; DoRA's
per-row magnitude) and so are the tensor layouts of every layer type (`layer_types.py`), so
converting is renaming; the config fields are mapped in `peft_config.py`. Two cases need
more than renaming:
  * PiSSA changed the base weight. PEFT's own answer, used here too, is to restate the
    trained adapter as a rank-2r LoRA on the *original* weight (see `pissa.py`), so the
    exported folder applies to the untouched pretrained model.
  * A quantized base (QLoRA) is not in the folder: the adapter is relative to the base it
    trained on, so apply it to the same quantized base for the same outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from loralab.errors import AdapterConfigError, MissingFileError
from loralab.io import atomic_path
from loralab.lora.inject import AdapterReport, apply_adapter, lora_layers
from loralab.lora.layer import LoRALayer
from loralab.lora.peft_config import (
    SEQ_CLS_HEADS,
    adapter_config_from_peft,
    auto_mapping_of,
    peft_config_of,
    task_type_of,
)
from loralab.lora.quantized_base import QuantizedBase
from loralab.lora.state import load_adapter_tensors
from loralab.lora.targets import match_any, task_heads
from loralab.lora.variants import variants_of

log = logging.getLogger("loralab.lora")

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."


def export_peft(
    model: nn.Module,
    folder: str | Path,
    base_model_name_or_path: str | None = None,
    task_type: str | None = None,
) -> Path:
    """Write the model's adapter as a PEFT folder; returns the folder.

    `task_type` (SEQ_CLS, CAUSAL_LM, ...; None: the one of a transformers model's class) and
    `base_model_name_or_path` (the hub id or local folder of the base) are what
    `AutoPeftModelFor<Task>.from_pretrained(folder)` reads. The model's new task head goes
    in as a module to save whether or not it trained: PEFT would initialise another one.
    """
    layers = list(lora_layers(model))
    if not layers:
        raise AdapterConfigError(
            f"the model has no LoRA layers, so there is no adapter to export to {folder}; "
            "apply adapter=lora (or dora) first."
        )
    first = layers[0][1]
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers:
        _check_same_settings(name, layer, first)
        for suffix, value in _exported_tensors(layer).items():
            tensors[f"{PREFIX}{name}.{suffix}"] = value
    modules_to_save = _fully_trained(model, tensors, layers)
    task_type = task_type or task_type_of(model)
    config = peft_config_of(
        layers, modules_to_save, base_model_name_or_path, task_type, auto_mapping_of(model)
    )
    if isinstance(first.base, QuantizedBase):
        log.warning(
            "the adapter in %s was trained on a base stored as %s; apply it to the same "
            "quantized base for the same outputs",
            folder,
            first.base.fmt,
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def _check_same_settings(name: str, layer: LoRALayer, first: LoRALayer) -> None:
    """PEFT's config holds one rank, alpha and method for all layers (patterns aside)."""
    settings = ("rank", "scaling", "scaling_rule", "init")
    if any(getattr(layer, s) != getattr(first, s) for s in settings) or type(layer) is not type(
        first
    ):
        raise AdapterConfigError(
            f"LoRA layer {name} has other settings than the first one, which one PEFT config "
            "cannot hold; export a model adapted with a single adapter config."
        )


def _exported_tensors(layer: LoRALayer) -> dict[str, torch.Tensor]:
    """The layer's adapter tensors as PEFT sees them, relative to the original base weight."""
    tensors = layer.peft_state()
    for variant in variants_of(layer):
        tensors = variant.peft_tensors(layer, tensors)
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def _fully_trained(
    model: nn.Module, tensors: dict[str, torch.Tensor], layers: list[tuple[str, LoRALayer]]
) -> list[str]:
    """Add the modules trained in full and the new task head to `tensors`; return their names."""
    adapter = {id(p) for _, layer in layers for p in layer.adapter_parameters().values()}
    # a head no LoRA layer sits in, trained or not: the base does not hold its weights
    heads = [h for h in task_heads(model) if not any(_inside(n, h) for n, _ in layers)]
    owners: list[str] = []
    for name, param in model.named_parameters():
        new_head = any(_inside(name, head) for head in heads)
        if (param.requires_grad or new_head) and id(param) not in adapter:
            tensors[PREFIX + name] = param.detach().to("cpu", copy=True).contiguous()
            owner = name.rpartition(".")[0]
            if owner not in owners:
                owners.append(owner)
    return owners


def _inside(name: str, module: str) -> bool:
    """Whether `name` is the module `module` or lies within it."""
    return name == module or name.startswith(module + ".")


def read_peft_config(folder: str | Path) -> dict[str, Any]:
    """The `adapter_config.json` of a PEFT folder, with one-sentence errors."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise MissingFileError(
            f"no {CONFIG_FILE} in {folder}; pass a folder written by PEFT's save_pretrained "
            "or by loralab.lora.export_peft."
        )
    return json.loads(path.read_text())


def import_peft(folder: str | Path, model: nn.Module) -> AdapterReport:
    """Apply the adapter of a PEFT folder to a fresh base model and load its tensors."""
    peft = read_peft_config(folder)
    cfg = adapter_config_from_peft(peft)
    cfg["trainable"] = _heads_the_model_has(model, cfg["trainable"], peft.get("task_type"))
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise MissingFileError(f"no {WEIGHTS_FILE} in {folder}; the PEFT folder is incomplete.")
    saved = {key.removeprefix(PREFIX): value for key, value in load_file(weights).items()}
    report = apply_adapter(model, cfg)
    load_adapter_tensors(model, _our_tensors(model, saved), weights)
    return report


def _heads_the_model_has(model: nn.Module, modules: list[str], task_type: str | None) -> list[str]:
    """PEFT's SEQ_CLS adapters list both `classifier` and `score`: keep the one the model has."""
    if task_type != "SEQ_CLS":
        return modules
    names = [name for name, _ in model.named_modules() if name]
    return [m for m in modules if m not in SEQ_CLS_HEADS or any(match_any(n, m) for n in names)]


def _our_tensors(model: nn.Module, saved: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PEFT's `x.lora_A.weight` (or `x.lora_embedding_A`, ...) -> our `x.lora_A`, per layer,
    in our shapes (PEFT keeps a conv's DoRA magnitude as 1 x out x 1 x 1, we as a vector)."""
    ours: dict[str, torch.Tensor] = dict(saved)
    for name, layer in lora_layers(model):
        own = layer.adapter_parameters()
        exported = layer.peft_state()
        for our_name, suffix in layer.peft_names().items():
            key = f"{name}.{suffix}"
            if key not in ours:
                continue
            value = ours.pop(key)
            if value.shape == exported[suffix].shape:  # PEFT's layout: back to ours
                value = value.reshape(own[our_name].shape)
            ours[f"{name}.{our_name}"] = value
    return ours

"""The weight updates of finished runs, read from the files a run leaves behind.

Full fine-tuning: delta W = W_finetuned (its best.ckpt) - W_pretrained (its base checkpoint).
Adapters: delta W = W_effective - W_pretrained from its adapter.safetensors: scaling * B @ A
for LoRA, rsLoRA and QLoRA; PiSSA and DoRA also need the pretrained weights (see
`lora_updates`). All keyed by module name, e.g. `layers.0.attn.q_proj`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from loralab.lora import lora_scaling, read_adapter_metadata
from loralab.lora.pissa import pissa_factors

# the attention projections of the tiny encoder / GPT (q_proj ...) and of BERT-style models
PROJECTION_PATTERNS = {
    "q": r"(q_proj|query)$",
    "k": r"(k_proj|key)$",
    "v": r"(v_proj|value)$",
    "o": r"(o_proj|out_proj|attention\.output\.dense)$",
}
# Lightning prefixes the task's attribute holding the backbone
TASK_PREFIX = "model."


def projection_of(module: str) -> str | None:
    """q, k, v or o for an attention projection's module name; None for any other module."""
    for short, pattern in PROJECTION_PATTERNS.items():
        if re.search(pattern, module):
            return short
    return None


def linear_weights(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """module name -> every 2-D weight (linear layers, embeddings) of a state dict or file."""
    return {
        key.removeprefix(TASK_PREFIX).removesuffix(".weight"): tensor
        for key, tensor in state.items()
        if key.endswith(".weight") and tensor.dim() == 2
    }


def attention_weights(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """module name -> 2-D weight of every attention projection in a state dict."""
    return {module: w for module, w in linear_weights(state).items() if projection_of(module)}


def full_finetuning_updates(ckpt_path: str | Path, base_path: str | Path) -> dict[str, Tensor]:
    """W_finetuned - W_pretrained for every attention projection both files hold."""
    checkpoint: dict[str, Any] = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    tuned = attention_weights(checkpoint["state_dict"])
    base = attention_weights(load_file(str(base_path), device="cpu"))
    return {
        name: tuned[name].double() - base[name].double()
        for name in sorted(tuned.keys() & base.keys())
        if tuned[name].shape == base[name].shape
    }


def adapter_scaling(adapter_path: str | Path) -> float:
    """The scaling an adapter file was trained with, from the settings saved beside it."""
    settings = read_adapter_metadata(adapter_path).get("adapter") or {}
    if "rank" not in settings or "alpha" not in settings:
        raise ValueError(f"{adapter_path} does not record adapter.rank and adapter.alpha")
    return lora_scaling(settings["alpha"], settings["rank"], settings.get("scaling", "standard"))


def lora_updates(
    adapter_path: str | Path,
    base_path: str | Path | None = None,
    scaling: float | None = None,
) -> dict[str, Tensor]:
    """W_effective - W_pretrained for every module with a lora_A / lora_B pair in an adapter file.

    LoRA, rsLoRA, QLoRA: scaling * B @ A, with the scaling saved in the file (alpha / r, or
    alpha / sqrt(r) for rsLoRA) unless `scaling` is given. PiSSA starts B @ A at the top-r
    singular part of W, so its change is scaling * B @ A minus that part; DoRA rescales each
    output row, W' = m * (W + scaling * B @ A) / ||W + scaling * B @ A||. Both read W from
    the pretrained backbone file `base_path` (.safetensors), which others never open.
    """
    settings = read_adapter_metadata(adapter_path).get("adapter") or {}
    scaling = adapter_scaling(adapter_path) if scaling is None else scaling
    pissa, dora = settings.get("init") == "pissa", settings.get("name") == "dora"
    tensors = load_file(str(adapter_path), device="cpu")
    base_weights: dict[str, Tensor] = {}
    if (pissa or dora) and base_path is not None and str(base_path).endswith(".safetensors"):
        base_weights = linear_weights(load_file(str(base_path), device="cpu"))
    updates = {}
    for module in _lora_modules(tensors):
        a, b = tensors[f"{module}.lora_A"].double(), tensors[f"{module}.lora_B"].double()
        low_rank = scaling * (b @ a)
        if not (pissa or dora):
            updates[module] = low_rank
            continue
        if module not in base_weights:
            kind = "PiSSA" if pissa else "DoRA"
            raise ValueError(
                f"the change a {kind} adapter makes to {module} needs its pretrained weight, "
                f"and base checkpoint {base_path} does not hold it"
            )
        weight = base_weights[module].double()
        if pissa:
            top_a, top_b = pissa_factors(weight, settings["rank"], scaling)
            low_rank = low_rank - scaling * (top_b.double() @ top_a.double())
        if dora:
            magnitude = tensors[f"{module}.lora_magnitude"].double()
            adapted = weight + low_rank
            norm = torch.linalg.vector_norm(adapted, dim=1, keepdim=True)
            low_rank = magnitude[:, None] * adapted / norm - weight
        updates[module] = low_rank
    return updates


def _lora_modules(keys: Iterable[str]) -> list[str]:
    modules = {key.removesuffix(".lora_A") for key in keys if key.endswith(".lora_A")}
    return sorted(m for m in modules if f"{m}.lora_B" in keys)

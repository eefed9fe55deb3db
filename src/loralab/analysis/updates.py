"""The weight updates of finished runs: delta W = W_effective - W_pretrained, per module.

Full fine-tuning: W_finetuned (from its best.ckpt) - W_pretrained (its base checkpoint).
Adapters: each layer of the adapter file is rebuilt around its pretrained weight with the
registered variant it was trained with, and asked what it computes: delta W =
`fold_into(W) - W`. That is scaling * B @ A for LoRA, rsLoRA and QLoRA, and the real change
for variants that rescale or re-split W (DoRA, PiSSA, or one registered by a user), with no
variant's maths written twice. All keyed by module name, e.g. `layers.0.attn.q_proj`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from loralab.lora import lora_scaling, read_adapter_metadata
from loralab.lora.layer_types import LINEAR, layer_type_named
from loralab.lora.variants import active_variants, build_layer
from loralab.models.projections import attention_projection

# Lightning prefixes the task's attribute holding the backbone
TASK_PREFIX = "model."


def projection_of(module: str) -> str | None:
    """q, k, v or o for an attention projection's module name; None for any other module."""
    return attention_projection(module)


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


def full_finetuning_updates(
    tuned_state: Mapping[str, Tensor], base_path: str | Path
) -> dict[str, Tensor]:
    """W_finetuned - W_pretrained for every attention projection both hold.

    `tuned_state` is the fine-tuned run's state dict (its checkpoint's `state_dict`).
    """
    tuned = attention_weights(tuned_state)
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
    adapter_path: str | Path, base_path: str | Path | None = None
) -> dict[str, Tensor]:
    """W_effective - W_pretrained for every adapted module of an adapter file.

    The pretrained weights come from the backbone file `base_path` (.safetensors) when given;
    variants whose change does not depend on W (plain LoRA) need none.
    """
    metadata = read_adapter_metadata(adapter_path)
    settings = metadata.get("adapter") or {}
    tensors = load_file(str(adapter_path), device="cpu")
    base_weights: dict[str, Tensor] = {}
    if base_path is not None and str(base_path).endswith(".safetensors"):
        if Path(base_path).is_file():
            base_weights = linear_weights(load_file(str(base_path), device="cpu"))
    layer_types = metadata.get("layer_types") or {}
    return {
        module: adapter_update(
            settings,
            params,
            base_weights.get(module),
            layer_types.get(module, LINEAR.name),
            where=f"{module} (base checkpoint {base_path})",
        )
        for module, params in adapter_tensors(tensors).items()
    }


def adapter_tensors(tensors: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """module -> its adapter tensors by name (lora_A, lora_B, lora_magnitude, ...)."""
    modules = sorted({k.removesuffix(".lora_A") for k in tensors if k.endswith(".lora_A")})
    return {
        module: {
            key.removeprefix(module + "."): t
            for key, t in tensors.items()
            if key.startswith(module + ".lora_")
        }
        for module in modules
    }


@torch.no_grad()
def adapter_update(
    settings: Mapping[str, Any],
    params: Mapping[str, Tensor],
    weight: Tensor | None,
    layer_type: str = LINEAR.name,
    where: str = "a layer",
) -> Tensor:
    """fold_into(W) - W of the layer these settings and tensors describe, in float64."""
    kind = layer_type_named(layer_type)
    settings = {"name": "lora", **settings}  # files written before the name was recorded
    active = active_variants(settings)
    layer_cls = next(v.layer for v in active if v.layer is not None)
    if weight is None:
        if layer_cls.update_needs_base or any(v.update_needs_base for v in active):
            names = ", ".join(v.name for v in active)
            raise ValueError(
                f"the change a {names} adapter makes to {where} needs its pretrained weight, "
                "which is not there"
            )
        delta_shape = kind.delta(params["lora_A"], params["lora_B"]).shape
        weight = torch.zeros(delta_shape, dtype=torch.float64)
    weight = weight.double()
    layer = build_layer(kind.plain_module(weight.clone(), None), settings)
    own = layer.adapter_parameters()
    for name, tensor in params.items():
        own[name].copy_(tensor.double())
    return layer.fold_into(layer.layer_type.weight(layer.base)) - weight

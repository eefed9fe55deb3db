"""The weight updates of finished runs, read from the files a run leaves behind.

Full fine-tuning: delta W = W_finetuned (its best.ckpt) - W_pretrained (its base checkpoint).
LoRA: delta W = scaling * B @ A (its adapter.safetensors). Both keyed by module name,
e.g. `layers.0.attn.q_proj`.
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


def attention_weights(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """module name -> 2-D weight of every attention projection in a state dict."""
    weights = {}
    for key, tensor in state.items():
        module = key.removeprefix(TASK_PREFIX).removesuffix(".weight")
        if key.endswith(".weight") and tensor.dim() == 2 and projection_of(module):
            weights[module] = tensor
    return weights


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


def lora_updates(adapter_path: str | Path, scaling: float | None = None) -> dict[str, Tensor]:
    """scaling * B @ A for every module with a lora_A / lora_B pair in an adapter file.

    `scaling` defaults to the one saved in the file (alpha / r, or alpha / sqrt(r) for
    rsLoRA). For DoRA this is the low-rank part of the update, before its magnitude rescaling;
    for PiSSA, whose B @ A starts at W's principal part rather than at zero, it is that part
    plus the update.
    """
    scaling = adapter_scaling(adapter_path) if scaling is None else scaling
    tensors = load_file(str(adapter_path), device="cpu")
    updates = {}
    for module in _lora_modules(tensors):
        a, b = tensors[f"{module}.lora_A"].double(), tensors[f"{module}.lora_B"].double()
        updates[module] = scaling * (b @ a)
    return updates


def _lora_modules(keys: Iterable[str]) -> list[str]:
    modules = {key.removesuffix(".lora_A") for key in keys if key.endswith(".lora_A")}
    return sorted(m for m in modules if f"{m}.lora_B" in keys)

"""Does merging change anything? The largest difference between merged and unmerged outputs."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from loralab.lora import lora_layers, merge_lora, unmerge_lora
from loralab.models.outputs import logits_of


@torch.no_grad()
def max_merge_diff(model: nn.Module, *inputs: Any, **kwargs: Any) -> float:
    """Largest |merged - unmerged| output on the given inputs: merging must change nothing.

    Runs in eval mode (no dropout) and leaves the model as it found it: same mode, and each
    layer merged or not as before.
    """
    layers = [layer for _, layer in lora_layers(model)]
    was_merged = [layer.merged for layer in layers]
    # per-module modes: a model may keep some submodules in eval on purpose
    was_training = {module: module.training for module in model.modules()}
    model.eval()
    try:
        unmerge_lora(model)
        unmerged = logits_of(model(*inputs, **kwargs))
        merge_lora(model)
        merged = logits_of(model(*inputs, **kwargs))
    finally:
        for layer, merged_before in zip(layers, was_merged, strict=True):
            if merged_before:
                layer.merge()
            else:
                layer.unmerge()
        for module, training in was_training.items():
            module.training = training
    return output_diff(merged, unmerged)


def output_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| in float32 (0 for empty outputs)."""
    if a.numel() == 0:
        return 0.0
    return (a.float() - b.float()).abs().max().item()

"""Fold the adapters into the base for good: a plain model that needs no LoRA code.

`merge_lora` keeps the LoRA layers (and can unmerge); `merge_and_unwrap` goes one step
further and puts the plain base layers back (`nn.Linear`, GPT-2's `Conv1D`, `nn.Embedding`,
convolutions), so the model's `state_dict` has exactly the keys and layouts of the backbone
it came from and loads into that backbone class (or `from_pretrained`) as is.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from loralab.lora.inject import lora_layers, replace_module
from loralab.lora.layer_types import layer_type_of
from loralab.lora.quantized_base import QuantizedBase

log = logging.getLogger("loralab.lora")


def dequantized(layer: QuantizedBase) -> nn.Module:
    """The plain layer of the type a quantized one stands in for, holding its current weight."""
    kind = layer_type_of(layer)
    return kind.plain_module(layer.weight, layer.bias)


@torch.no_grad()
def merge_and_unwrap(model: nn.Module) -> nn.Module:
    """Merge every adapter and replace each wrapper by its plain base layer, in place.

    A quantized base becomes a float layer of its original type holding the dequantized
    (and merged) weight: exactly what the quantized model computed, never requantized.
    """
    formats = {m.fmt for m in model.modules() if isinstance(m, QuantizedBase)}
    quantized = sum(1 for m in model.modules() if isinstance(m, QuantizedBase))
    wrapped = list(lora_layers(model))
    for name, layer in wrapped:
        layer.merge(warn=False)  # the layers become float below, which the warning says
        base = dequantized(layer.base) if isinstance(layer.base, QuantizedBase) else layer.base
        replace_module(model, name, base)
    # the frozen layers no adapter wraps
    for name, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, QuantizedBase)]:
        replace_module(model, name, dequantized(layer))
    if quantized:
        log.warning(
            "dequantized %d frozen layers stored as %s to float: the plain model computes what "
            "the quantized one did, at float size",
            quantized,
            "/".join(sorted(formats)),
        )
    log.info("folded %d adapters into their base weights", len(wrapped))
    return model

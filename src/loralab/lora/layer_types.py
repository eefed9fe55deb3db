"""The layer types LoRA can wrap: one of the registry's two axes (the other is the variant).

A `LayerType` says how a low-rank update attaches to one kind of base layer: the shapes of
A and B, the low-rank path `B A x` in the layer's output layout, and the update `B @ A` in
the base weight's own layout (so that it can be folded in). Everything else, the scaling,
merging, saving and the variants, is written once in terms of these few operations.

Adding a layer type is one subclass here plus `register_layer_type(...)`; every variant
that declares no restriction of its `layer_types` then works on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from loralab.lora.quantized_linear import QuantizedLinear


class LayerType:
    """How LoRA attaches to one kind of base layer; stateless, one instance per kind."""

    name: str = "layer"
    # the base modules of this type (checked with isinstance)
    module_types: tuple[type[nn.Module], ...] = ()
    # part of `all-linear` (PEFT: Linear and transformers' Conv1D)
    linear: bool = False
    # our tensor name -> the key suffix PEFT saves it under
    peft_names = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"}

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, self.module_types)

    def features(self, base: nn.Module) -> tuple[int, int]:
        """(in, out): the sizes the update maps between; rank <= min of them."""
        raise NotImplementedError

    def a_shape(self, base: nn.Module, rank: int) -> tuple[int, ...]:
        return (rank, self.features(base)[0])

    def b_shape(self, base: nn.Module, rank: int) -> tuple[int, ...]:
        return (self.features(base)[1], rank)

    def init_a(self, lora_a: Tensor, init: str) -> None:
        """A random, so that B's gradient is not zero; B itself starts at exactly zero."""
        if init == "gaussian":
            nn.init.normal_(lora_a, mean=0.0, std=0.01)
        else:  # the init nn.Linear gives its own weight
            nn.init.kaiming_uniform_(lora_a, a=math.sqrt(5))

    def low_rank(self, x: Tensor, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        """B A x, shaped like the base layer's output."""
        raise NotImplementedError

    def add_update(
        self, result: Tensor, x: Tensor, lora_a: Tensor, lora_b: Tensor, scaling: float
    ) -> Tensor:
        """The base output plus scaling * B A x."""
        return result + scaling * self.low_rank(x, lora_a, lora_b)

    def delta(self, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        """B @ A in the layout of the base weight (unscaled)."""
        raise NotImplementedError

    def weight(self, base: nn.Module) -> Tensor:
        """The base weight the update is folded into (dequantized for a quantized base)."""
        return base.weight

    def rows(self, weight: Tensor) -> Tensor:
        """The weight as (out, everything else): one row per output channel (DoRA, PiSSA)."""
        return weight.reshape(weight.shape[0], -1)

    def scale_rows(self, weight: Tensor, scale: Tensor) -> Tensor:
        """The weight with output channel i multiplied by scale[i]."""
        return scale.to(weight.dtype).view(-1, *([1] * (weight.dim() - 1))) * weight

    def without_bias(self, base: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
        """What the base computes with `weight` and no bias."""
        raise NotImplementedError

    def per_output(self, scale: Tensor, output: Tensor) -> Tensor:
        """A per-output-channel `scale` shaped to broadcast against the layer's output."""
        return scale

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        """A plain base layer holding `weight` and `bias` (for the analysis and for merges)."""
        raise NotImplementedError


class LinearType(LayerType):
    """`nn.Linear` (and a frozen `QuantizedLinear`): y = x W^T + b, W is out x in."""

    name = "Linear"
    module_types = (nn.Linear, QuantizedLinear)
    linear = True

    def features(self, base: nn.Module) -> tuple[int, int]:
        return base.in_features, base.out_features

    def low_rank(self, x: Tensor, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        return F.linear(F.linear(x, lora_a), lora_b)

    def add_update(
        self, result: Tensor, x: Tensor, lora_a: Tensor, lora_b: Tensor, scaling: float
    ) -> Tensor:
        # go through the rank-r bottleneck first: two thin matmuls instead of one full one.
        # addmm computes result + scaling * low_rank @ B^T in one BLAS call, so neither the
        # scaling nor the sum costs an extra pass over the (..., out) tensor
        low_rank = F.linear(x, lora_a)
        summed = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            low_rank.reshape(-1, lora_a.shape[0]),
            lora_b.t(),
            alpha=scaling,
        )
        return summed.view(result.shape)

    def delta(self, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        return lora_b @ lora_a

    def without_bias(self, base: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight)

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        out_features, in_features = weight.shape
        linear = nn.Linear(in_features, out_features, bias=bias is not None)
        linear.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        return linear.requires_grad_(False)


LAYER_TYPES: list[LayerType] = []


def register_layer_type(layer_type: LayerType) -> LayerType:
    """Make a layer type adaptable; a later registration for the same name replaces it."""
    LAYER_TYPES[:] = [t for t in LAYER_TYPES if t.name != layer_type.name] + [layer_type]
    return layer_type


def layer_type_of(module: nn.Module) -> LayerType | None:
    """The registered type of a base module, or None if LoRA cannot wrap it."""
    return next((t for t in LAYER_TYPES if t.matches(module)), None)


def layer_type_named(name: str) -> LayerType:
    found = next((t for t in LAYER_TYPES if t.name == name), None)
    if found is None:
        raise KeyError(f"no layer type named {name!r}; registered: {type_names()}")
    return found


def type_names() -> str:
    return ", ".join(t.name for t in LAYER_TYPES)


LINEAR = register_layer_type(LinearType())

"""The layer types LoRA can wrap: one of the registry's two axes (the other is the variant).

A `LayerType` says how a low-rank update attaches to one kind of base layer: the shapes of
A and B, the low-rank path `B A x` in the layer's output layout, and the update `B @ A` in
the base weight's own layout (so that it can be folded in). Everything else, the scaling,
merging, saving and the variants, is written once in terms of these few operations.

Built in, with the tensor layouts PEFT uses, so adapters convert by renaming:

| type | base | A | B | update B @ A in W's layout |
|---|---|---|---|---|
| `Linear` | `nn.Linear`, W: out x in | r x in | out x r | B @ A |
| `Conv1D` | transformers' `Conv1D` (GPT-2), W: in x out | r x in | out x r | (B @ A)^T |
| `Embedding` | `nn.Embedding`, W: num x dim | r x num | dim x r | (B @ A)^T |
| `Conv1d`, `Conv2d` | W: out x in x k... | a conv with the layer's kernel, stride and padding: r x in x k... | a 1x1 conv: out x r x 1... | B @ A per kernel tap |

Adding a layer type is one subclass here plus `register_layer_type(...)`; every variant
that declares no restriction of its `layer_types` then works on it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from loralab.lora.quantized_base import QuantizedBase


class LayerType:
    """How LoRA attaches to one kind of base layer; stateless, one instance per kind."""

    name: str = "layer"
    # part of `all-linear` (PEFT: Linear and transformers' Conv1D)
    linear: bool = False
    # QLoRA may store a frozen base of this type quantized (a `QuantizedBase`)
    quantizable: bool = False
    # the base weight is stored in x out (PEFT's `fan_in_fan_out`)
    fan_in_fan_out: bool = False
    # our tensor name -> the key suffix PEFT saves it under
    peft_names = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"}

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        """The base modules of this type (checked with isinstance)."""
        return ()

    def matches(self, module: nn.Module) -> bool:
        if isinstance(module, QuantizedBase):  # a quantized base keeps its original type
            return module.layer_type == self.name
        return isinstance(module, self.module_types)

    def refusal(self, base: nn.Module) -> str | None:
        """Why this particular layer cannot take an exact update (None: it can)."""
        return None

    def features(self, base: nn.Module) -> tuple[int, int]:
        """(in, out): the sizes the update maps between."""
        raise NotImplementedError

    def max_rank(self, base: nn.Module) -> int:
        """The highest rank the update B @ A can have: that of the weight's matrix view."""
        return min(self.features(base))

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

    def takes_dropout(self) -> bool:
        """Whether dropout on the layer's input means anything (not on token ids)."""
        return True

    def low_rank(self, base: nn.Module, x: Tensor, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        """B A x, shaped like the base layer's output."""
        raise NotImplementedError

    def bottleneck(self, base: nn.Module, x: Tensor, lora_a: Tensor) -> Tensor | None:
        """A x as (..., r) where B's product can be fused into the addition (`add_update`);
        None where it cannot (a convolution's B is a conv of its own)."""
        return None

    def add_update(
        self,
        base: nn.Module,
        result: Tensor,
        x: Tensor,
        lora_a: Tensor,
        lora_b: Tensor,
        scaling: float,
    ) -> Tensor:
        """The base output plus scaling * B A x."""
        low_rank = self.bottleneck(base, x, lora_a)
        if low_rank is not None:
            # through the rank-r bottleneck first: two thin matmuls instead of one full one
            return add_through_rank(result, low_rank, lora_b, scaling)
        return result + scaling * self.low_rank(base, x, lora_a, lora_b)

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

    def peft_magnitude(self, magnitude: Tensor) -> Tensor:
        """DoRA's per-output magnitude in the shape PEFT stores it (a vector for most types)."""
        return magnitude

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        """A plain base layer holding `weight` and `bias` (for the analysis and for merges)."""
        raise NotImplementedError


def filled(module: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Module:
    """`module` on weight's device and dtype, holding `weight` and `bias`, frozen."""
    module.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    return module.requires_grad_(False)


def add_through_rank(result: Tensor, low_rank: Tensor, lora_b: Tensor, scaling: float) -> Tensor:
    """result + scaling * low_rank @ B^T in one addmm: no extra pass over the (..., out) tensor."""
    summed = torch.addmm(
        result.reshape(-1, result.shape[-1]),
        low_rank.reshape(-1, lora_b.shape[1]),
        lora_b.t(),
        alpha=scaling,
    )
    return summed.view(result.shape)


class LinearType(LayerType):
    """`nn.Linear` (and a frozen quantized one): y = x W^T + b, W is out x in."""

    name = "Linear"
    linear = True
    quantizable = True

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return (nn.Linear,)

    def features(self, base: nn.Module) -> tuple[int, int]:
        return base.in_features, base.out_features

    def low_rank(self, base: nn.Module, x: Tensor, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        return F.linear(F.linear(x, lora_a), lora_b)

    def bottleneck(self, base: nn.Module, x: Tensor, lora_a: Tensor) -> Tensor:
        return F.linear(x, lora_a)

    def delta(self, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        return lora_b @ lora_a

    def without_bias(self, base: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight)

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        out_features, in_features = weight.shape
        return filled(nn.Linear(in_features, out_features, bias=bias is not None), weight, bias)


def transformers_conv1d() -> tuple[type[nn.Module], ...]:
    """transformers' `Conv1D` class if transformers is loaded (no model can hold one otherwise)."""
    module = sys.modules.get("transformers.pytorch_utils")
    return (module.Conv1D,) if module is not None else ()


class InputMajorWeight:
    """A layer whose weight is stored (in, out), the transpose of Linear's (out, in): GPT-2's
    Conv1D (x @ W) and Embedding (a row per input id). Output channels are its columns."""

    def delta(self, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        return (lora_b @ lora_a).t()

    def rows(self, weight: Tensor) -> Tensor:
        return weight.t()

    def scale_rows(self, weight: Tensor, scale: Tensor) -> Tensor:
        return weight * scale.to(weight.dtype)[None, :]


class Conv1DType(InputMajorWeight, LinearType):
    """transformers' `Conv1D` (GPT-2's c_attn, c_proj, c_fc): y = x W + b, W is in x out.

    A linear layer whose weight is stored transposed, so A and B are exactly Linear's and so
    is the forward path; only the update folds in transposed, and an output channel is a
    column of W.
    """

    name = "Conv1D"
    fan_in_fan_out = True

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return transformers_conv1d()

    def features(self, base: nn.Module) -> tuple[int, int]:
        if isinstance(base, QuantizedBase):
            return base.shape[1], base.shape[0]  # stored as out x in
        return base.nx, base.nf

    def without_bias(self, base: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
        return x @ weight

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        from transformers.pytorch_utils import Conv1D

        in_features, out_features = weight.shape
        conv = filled(Conv1D(out_features, in_features), weight, bias)
        if bias is None:
            nn.init.zeros_(conv.bias)  # Conv1D always has a bias
        return conv


class EmbeddingType(InputMajorWeight, LayerType):
    """`nn.Embedding`: row i of W (num x dim) is token i's vector; LoRA adds row i of (B A)^T.

    As in PEFT (`lora_embedding_A`, r x num; `lora_embedding_B`, dim x r), the update is
    looked up like an embedding: A's column for each id, then B. An output channel is one
    embedding dimension, a column of W.
    """

    name = "Embedding"
    peft_names = {"lora_A": "lora_embedding_A", "lora_B": "lora_embedding_B"}

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return (nn.Embedding,)

    def refusal(self, base: nn.Module) -> str | None:
        if base.max_norm is not None:
            return (
                f"an Embedding with max_norm={base.max_norm}, which renormalises looked-up "
                "rows so that no fixed update of W reproduces it"
            )
        return None

    def features(self, base: nn.Module) -> tuple[int, int]:
        return base.num_embeddings, base.embedding_dim

    def takes_dropout(self) -> bool:
        return False  # the input is token ids

    def bottleneck(self, base: nn.Module, x: Tensor, lora_a: Tensor) -> Tensor:
        """A's column for every id: (..., r); the padding id's column gets no gradient."""
        return F.embedding(x, lora_a.t(), padding_idx=base.padding_idx)

    def low_rank(self, base: nn.Module, x: Tensor, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        return self.bottleneck(base, x, lora_a) @ lora_b.t()

    def without_bias(self, base: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
        return F.embedding(x, weight, padding_idx=base.padding_idx)

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        num, dim = weight.shape
        return filled(nn.Embedding(num, dim), weight, None)


class ConvType(LayerType):
    """`nn.Conv1d` / `nn.Conv2d`: A is a conv with the layer's kernel, stride and padding
    (r x in x k...), B a 1x1 conv (out x r x 1...), so B A x is a rank-r conv; its kernel,
    tap by tap B @ A, folds into W (out x in x k...)."""

    module: type[nn.Module] = nn.Conv2d
    conv: Callable[..., Tensor] = staticmethod(F.conv2d)
    dims = 2  # spatial dimensions of the kernel

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        return (self.module,)

    def refusal(self, base: nn.Module) -> str | None:
        unusual = {
            "groups": (base.groups, 1),
            "dilation": (base.dilation, (1,) * self.dims),
            "padding_mode": (base.padding_mode, "zeros"),
        }
        for key, (value, plain) in unusual.items():
            if value != plain:
                return (
                    f"a {self.name} with {key}={value!r}; LoRA (as in PEFT) adapts convolutions "
                    f"with {key}={plain!r} only"
                )
        return None

    def features(self, base: nn.Module) -> tuple[int, int]:
        return base.in_channels, base.out_channels

    def max_rank(self, base: nn.Module) -> int:
        # the update is out x (in * kernel taps / groups): a 3->32 8x8 patch conv reaches 32
        taps = math.prod(base.kernel_size)
        return min(base.out_channels, base.in_channels * taps // base.groups)

    def a_shape(self, base: nn.Module, rank: int) -> tuple[int, ...]:
        return (rank, base.in_channels, *base.kernel_size)

    def b_shape(self, base: nn.Module, rank: int) -> tuple[int, ...]:
        return (base.out_channels, rank, *([1] * self.dims))

    def low_rank(self, base: nn.Module, x: Tensor, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        after_a = self.conv(x, lora_a, None, base.stride, base.padding)
        return self.conv(after_a, lora_b)

    def delta(self, lora_a: Tensor, lora_b: Tensor) -> Tensor:
        # W[o, i, taps] = sum_r B[o, r] A[r, i, taps]
        return (lora_b.flatten(1) @ lora_a.flatten(1)).view(lora_b.shape[0], *lora_a.shape[1:])

    def without_bias(self, base: nn.Module, x: Tensor, weight: Tensor) -> Tensor:
        return self.conv(x, weight, None, base.stride, base.padding)

    def per_output(self, scale: Tensor, output: Tensor) -> Tensor:
        return scale.view(-1, *([1] * self.dims))  # channels come before the spatial dims

    def peft_magnitude(self, magnitude: Tensor) -> Tensor:
        return magnitude.view(1, -1, *([1] * self.dims))

    def plain_module(self, weight: Tensor, bias: Tensor | None) -> nn.Module:
        out_channels, in_channels, *kernel = weight.shape
        conv = self.module(in_channels, out_channels, tuple(kernel), bias=bias is not None)
        return filled(conv, weight, bias)


class Conv1dType(ConvType):
    name, module, conv, dims = "Conv1d", nn.Conv1d, staticmethod(F.conv1d), 1


class Conv2dType(ConvType):
    name, module, conv, dims = "Conv2d", nn.Conv2d, staticmethod(F.conv2d), 2


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
CONV1D = register_layer_type(Conv1DType())
EMBEDDING = register_layer_type(EmbeddingType())
CONV1D_CHANNELS = register_layer_type(Conv1dType())
CONV2D = register_layer_type(Conv2dType())

"""`QuantizedLinear`: a frozen linear layer stored in int8 or NF4, dequantized on the fly.

This is the frozen base of QLoRA: the weight lives as codes + scales (see `quant.py`), and
every forward rebuilds a full-precision copy just for the matmul, then drops it (generation,
which calls the model once per token, and evaluation hold one copy throughout:
`loralab.models.held_casts`). Memory for the weights falls to ~1/4 (int8) or ~1/8 (NF4) of
float32; the price is the rounding error and a dequantization per call. LoRA's A and B on
top stay in full precision.

A linear layer whose weight is stored transposed (transformers' `Conv1D` in GPT-2, in x out:
PEFT's `fan_in_fan_out`) is quantized as out x in like any other, so int8 keeps one scale
per output channel, and `weight` gives it back in its own layout; `layer_type` records which
registered layer type the quantized layer stands in for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from loralab.lora.quant import QuantizedWeight, dequantize, quantize
from loralab.lora.quantized_base import QuantizedBase


class QuantizedLinear(QuantizedBase):
    """A frozen linear layer whose weight is stored quantized; the bias stays as it was."""

    def __init__(
        self,
        linear: nn.Module,
        fmt: str,
        double_quant: bool = False,
        fan_in_fan_out: bool = False,
        layer_type: str = "Linear",
    ) -> None:
        super().__init__(fmt, layer_type)
        self.fan_in_fan_out = fan_in_fan_out
        self.double_quant = double_quant
        self.dtype = linear.weight.dtype
        q = quantize(self.as_out_by_in(linear.weight), fmt, double_quant)
        self.out_features, self.in_features = q.shape
        self.shape = q.shape
        # buffers, not parameters: they move with .to(device), never train, and are saved
        for name, tensor in q.tensors().items():
            self.register_buffer(name, tensor)
        self.bias = linear.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        # the dequantized weight, held for a block of calls that reuse it (`held_casts`)
        self.held_weight: Tensor | None = None

    def stored(self) -> QuantizedWeight:
        """The quantized weight as stored in this layer's buffers."""
        return QuantizedWeight(
            self.fmt,
            self.shape,
            self.codes,
            self.scales,
            getattr(self, "scale_absmax", None),
            getattr(self, "scale_mean", None),
        )

    def as_out_by_in(self, weight: Tensor) -> Tensor:
        """A weight in this layer's own layout as out x in, and back (a transpose undoes itself)."""
        return weight.t() if self.fan_in_fan_out else weight

    def dequantize(self) -> Tensor:
        """The weight the stored codes stand for (not any merged update), in the layer's layout."""
        return self.as_out_by_in(dequantize(self.stored(), self.dtype))

    @property
    def weight(self) -> Tensor:
        """A full-precision weight for this call: merged if an adapter was merged in."""
        if self.dense_weight is not None:
            return self.dense_weight
        return self.held_weight if self.held_weight is not None else self.dequantize()

    def stored_tensors(self) -> list[Tensor]:
        return list(self.stored().tensors().values())

    def stored_bytes(self) -> int:
        """Bytes the weight takes as stored (codes and scales; the bias is not included)."""
        return self.stored().stored_bytes()

    def forward(self, x: Tensor) -> Tensor:
        weight = self.as_out_by_in(self.weight)
        if not torch.is_autocast_enabled(x.device.type):  # autocast casts for F.linear itself
            weight = weight.to(x.dtype)
        return F.linear(x, weight, self.bias)

    @torch.no_grad()
    def requantization_error(self) -> float:
        """max |W - quantize(W)| of the merged weight held in float: what requantizing loses."""
        if self.dense_weight is None:
            return 0.0
        linear = self.as_out_by_in(self.dense_weight)
        requantized = dequantize(quantize(linear, self.fmt, self.double_quant))
        return float((requantized - linear).abs().max())

    def extra_repr(self) -> str:
        dq = ", double_quant" if self.double_quant else ""
        layout = f", {self.layer_type}" if self.layer_type != "Linear" else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"{self.fmt}{dq}{layout}"
        )

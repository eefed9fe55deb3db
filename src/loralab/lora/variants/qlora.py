"""QLoRA: the frozen base stored in 4-bit NF4 or int8 (`adapter.quant=nf4|int8`).

QLoRA (Dettmers et al., 2023) keeps the frozen base quantized and trains LoRA in full
precision on top. After every target is wrapped, each frozen linear layer, the wrapped bases
included, becomes a `QuantizedLinear` (see `loralab.lora.quant` for the formats); a layer
whose output depends on the base weight (DoRA's magnitude) is then told its base changed, so
the model still equals its (quantized) base at init.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer
from loralab.lora.quant import FORMATS
from loralab.lora.quantized_linear import quantize_frozen_linears
from loralab.lora.variants.registry import Variant


class QLoRA(Variant):
    name = "qlora"
    key, values = "quant", FORMATS
    settings = ("double_quant",)
    changes_base = True  # the shared base would be stored quantized

    def validate(self, adapter: Mapping[str, Any]) -> None:
        double_quant = adapter.get("double_quant", False)
        if not isinstance(double_quant, bool):
            raise AdapterConfigError(
                f"adapter.double_quant must be true or false, got {double_quant!r}; "
                "set adapter.double_quant=true to also quantize the quantization scales."
            )

    def prepare_model(self, model: nn.Module, adapter: Mapping[str, Any]) -> list[str]:
        # after wrapping: PiSSA splits the full-precision weight, then its residual is stored
        quantized = quantize_frozen_linears(
            model, adapter[self.key], adapter.get("double_quant", False)
        )
        for module in model.modules():
            if isinstance(module, LoRALayer):
                module.base_changed()  # e.g. DoRA: the magnitude of the weight it now sees
        return quantized

    def tag(self, method: str, adapter: Mapping[str, Any]) -> str:
        return f"q{method}-{adapter[self.key]}"


QLORA = QLoRA()

"""QLoRA: the frozen base stored in 4-bit NF4 or int8 (`adapter.quant=nf4|int8`).

QLoRA (Dettmers et al., 2023) keeps the frozen base quantized and trains LoRA in full
precision on top. After every target is wrapped, each frozen linear layer (every layer type
marked `quantizable`: `nn.Linear` and GPT-2's transposed `Conv1D`), the wrapped bases
included, becomes a `QuantizedLinear` (see `loralab.lora.quant` for the formats); a layer
whose output depends on the base weight (DoRA's magnitude) is then told its base changed, so
the model still equals its (quantized) base at init. Embeddings, convolutions and norms stay
in full precision, as in QLoRA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer
from loralab.lora.layer_types import layer_type_of
from loralab.lora.quant import FORMATS, NF4_BLOCK_SIZE, SCALE_BLOCK_SIZE
from loralab.lora.quantized_linear import QuantizedLinear
from loralab.lora.variants.registry import MemoryTerms, Variant, register_variant

# bytes per weight of the memory planner's qlora: 4-bit NF4 codes, an 8-bit scale per block
# of 64 (double quantization) and an fp32 scale per 256 of those
NF4_BYTES = 0.5 + 1 / NF4_BLOCK_SIZE + 4 / (NF4_BLOCK_SIZE * SCALE_BLOCK_SIZE)


def quantize_frozen_linears(model: nn.Module, fmt: str, double_quant: bool = False) -> list[str]:
    """Swap every frozen linear layer (LoRA's bases included) for a `QuantizedLinear`.

    Layers that train (a new head, anything in adapter.trainable) stay in full precision,
    and so do embeddings and norms, as in QLoRA. Returns the names of the swapped layers.
    """
    swapped = []
    for parent_name, parent in list(model.named_modules()):
        if isinstance(parent, nn.MultiheadAttention):
            continue  # it reads out_proj.weight directly; a quantized out_proj would be ignored
        for child_name, child in list(parent.named_children()):
            kind = layer_type_of(child)
            # the exact class: a subclass may compute something else with its weight
            plain = kind is not None and type(child) in kind.module_types
            if plain and kind.quantizable and not child.weight.requires_grad:
                quantized = QuantizedLinear(
                    child, fmt, double_quant, kind.fan_in_fan_out, kind.name
                )
                setattr(parent, child_name, quantized)
                swapped.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    return swapped


class QLoRA(Variant):
    name = "qlora"
    key, values = "quant", FORMATS
    off_values = (None,)
    settings = ("double_quant",)
    changes_base = True  # the shared base would be stored quantized
    memory = MemoryTerms(stored_weight_bytes=NF4_BYTES)
    order = 50
    model_change = "frozen linear layers quantized"

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


QLORA = register_variant(QLoRA())

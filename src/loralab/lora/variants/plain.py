"""Plain LoRA, rsLoRA and LoRA+: the variants that change only a number.

- `lora` (`adapter.name=lora`): `LoRALayer` itself.
- `rslora` (`adapter.scaling=rs`): the scaling alpha / sqrt(r) (Kalajdzievski, 2023): alpha / r
  shrinks the update at large ranks, alpha / sqrt(r) does not. Its rule is registered here
  for `LoRALayer` to apply; PEFT calls it `use_rslora`.
- `loraplus` (`adapter.lr_ratio_b=16`): LoRA+ (Hayou et al., 2024) trains B `lr_ratio_b`
  times faster than A. The layer's B is tagged with an `lr_scale` that the optimiser reads
  (`loralab.tasks.optim`), so no task knows it is LoRA+.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer, ScalingRule, register_scaling_rule
from loralab.lora.variants.registry import ANY, MemoryTerms, Variant, register_variant


class PlainLoRA(Variant):
    name = "lora"
    key, values = "name", ("lora",)
    layer = LoRALayer
    memory = MemoryTerms()
    order = 10


class RsLoRA(Variant):
    name = "rslora"
    key, values = "scaling", ("rs",)
    order = 20

    def tag(self, method: str, adapter: Mapping[str, Any]) -> str:
        return "rs" + method

    def peft_fields(self, layer: LoRALayer) -> dict[str, Any]:
        return {"use_rslora": True}

    def adapter_from_peft(self, peft: Mapping[str, Any]) -> dict[str, Any]:
        return {"scaling": "rs"} if peft.get("use_rslora") else {}


class LoRAPlus(Variant):
    name = "loraplus"
    key, values = "lr_ratio_b", (ANY,)
    order = 30

    def validate(self, adapter: Mapping[str, Any]) -> None:
        ratio = adapter.get(self.key)
        if ratio is None:
            return
        if isinstance(ratio, bool) or not isinstance(ratio, Real) or ratio <= 0:
            raise AdapterConfigError(
                f"adapter.lr_ratio_b must be null or a positive number, got {ratio!r}; "
                "set adapter.lr_ratio_b=16 (LoRA+) or adapter.lr_ratio_b=null."
            )

    def prepare_layer(self, layer: LoRALayer, adapter: Mapping[str, Any]) -> None:
        # B learns `lr_ratio_b` times faster than A; the optimiser reads this tag
        layer.lora_B.lr_scale = float(adapter[self.key])


PLAIN = register_variant(PlainLoRA())
RSLORA = register_variant(RsLoRA())
LORAPLUS = register_variant(LoRAPlus())
register_scaling_rule(RSLORA.values[0], ScalingRule(math.sqrt, "alpha/sqrt(r)"))

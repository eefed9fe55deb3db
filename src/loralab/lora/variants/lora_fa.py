"""LoRA-FA: A frozen at its random init, only B trains (`adapter.freeze_a=true`).

LoRA-FA (Zhang et al., 2023, "LoRA-FA: Memory-efficient Low-rank Adaptation for Large
Language Models Fine-tuning") keeps the down-projection A (r x in) at its random init and
trains only the up-projection B (out x r). The update is still scaling * B @ A, so the
forward, the merge and the PEFT export are plain LoRA's (A included: PEFT has no LoRA-FA
type, and none is needed to compute the same outputs). What it saves is memory: r * out
trained numbers per layer instead of r * (in + out), and since A needs no gradient, an
adapted layer keeps only A x (r numbers per token) for B's gradient instead of its
in-sized input.

A does not train, yet it is part of the adapter: adapter files hold it like B, and a
training checkpoint rebuilds it under the run's seed, as it does a randomly initialised base.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer
from loralab.lora.variants.registry import MemoryTerms, Variant, register_variant


class LoRAFA(Variant):
    name = "lora_fa"
    key, values = "freeze_a", (True,)
    off_values = (False,)
    memory = MemoryTerms(trains_a=False)
    order = 70

    def validate(self, adapter: Mapping[str, Any]) -> None:
        value = adapter.get(self.key, False)
        if not isinstance(value, bool):
            raise AdapterConfigError(
                f"adapter.freeze_a must be true or false, got {value!r}; set "
                "adapter.freeze_a=true (LoRA-FA: only B trains) or adapter.freeze_a=false."
            )

    def prepare_layer(self, layer: LoRALayer, adapter: Mapping[str, Any]) -> None:
        layer.lora_A.requires_grad_(False)  # kept at its random init

    def tag(self, method: str, adapter: Mapping[str, Any]) -> str:
        return method + "-fa"


LORA_FA = register_variant(LoRAFA())

"""DoRA: LoRA that learns the size and the direction of each weight row apart.

DoRA (Liu et al., 2024) writes a weight as magnitude times direction. With the LoRA update
in the direction only:

    W' = m * (W + s B A) / ||W + s B A||,    the norm taken per output row,

where m (one number per output row) trains alongside A and B. At init m = ||W|| and B = 0,
so W' = W: the layer equals its base. Full fine-tuning tends to change magnitude and
direction independently, plain LoRA couples them; DoRA decouples them again for `out`
extra parameters per layer. As in the paper (section 4.3), the norm is treated as a
constant in the backward pass, which saves memory and changes the gradient very little.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from loralab.lora.layer import LoRALayer
from loralab.lora.variants.registry import Variant, register_variant

MAGNITUDE = "lora_magnitude"


class DoRALayer(LoRALayer):
    """A `LoRALayer` whose output rows are rescaled to a trainable magnitude `lora_magnitude`."""

    update_needs_base = True  # the row norms of W decide the rescaling

    def __init__(self, base: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(base, *args, **kwargs)
        self.lora_magnitude = nn.Parameter(self.lora_B.new_empty(self.out_features))
        self.base_changed()
        # the norm used by the last merge, which unmerge needs to divide it back out
        self.register_buffer("merged_norm", None, persistent=False)

    @torch.no_grad()
    def base_changed(self) -> None:
        """m = ||W + s B A||: the layer equals its base; called again when the base is replaced."""
        self.lora_magnitude.copy_(self.row_norm(self.layer_type.weight(self.base)))

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {**super().adapter_parameters(), MAGNITUDE: self.lora_magnitude}

    def peft_names(self) -> dict[str, str]:
        return {**super().peft_names(), MAGNITUDE: "lora_magnitude_vector"}

    def peft_state(self) -> dict[str, Tensor]:
        state = super().peft_state()
        key = self.peft_names()[MAGNITUDE]
        state[key] = self.layer_type.peft_magnitude(state[key])  # conv: (1, out, 1, ...)
        return state

    def row_norm(self, weight: Tensor) -> Tensor:
        """||W + s B A|| per output row: the length the direction is divided by."""
        adapted = weight + self.delta_weight().to(weight.dtype)
        return torch.linalg.vector_norm(self.layer_type.rows(adapted), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        kind = self.layer_type
        weight = kind.weight(self.base)  # dequantized once here if the base is quantized
        result = self.base(x)  # the base layer's own output
        x = self.dropout(x)
        update = self.low_rank(x) * self.scaling
        row_scale = kind.per_output(self.lora_magnitude / self.row_norm(weight).detach(), result)
        # m/||.|| * (W x + s B A x) + b, written as a correction to the base output; at init
        # row_scale is exactly 1 and the update exactly 0, so the base output comes back
        return (
            result + (row_scale - 1) * kind.without_bias(self.base, x, weight) + row_scale * update
        )

    def fold_into(self, weight: Tensor) -> Tensor:
        adapted = weight + self.delta_weight().to(weight.dtype)
        self.merged_norm = torch.linalg.vector_norm(self.layer_type.rows(adapted), dim=1)
        return self.layer_type.scale_rows(adapted, self.lora_magnitude / self.merged_norm)

    def take_out_of(self, merged_weight: Tensor) -> Tensor:
        norm, self.merged_norm = self.merged_norm, None
        adapted = self.layer_type.scale_rows(merged_weight, norm / self.lora_magnitude)
        return adapted - self.delta_weight().to(merged_weight.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", dora=True"


class DoRA(Variant):
    name = "dora"
    key, values = "name", ("dora",)
    layer = DoRALayer
    order = 40

    def peft_fields(self, layer: LoRALayer) -> dict[str, Any]:
        return {"use_dora": True}

    def adapter_from_peft(self, peft: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": "dora"} if peft.get("use_dora") else {}


DORA = register_variant(DoRA())

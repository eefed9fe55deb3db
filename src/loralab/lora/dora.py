"""`DoRALinear`: LoRA that learns the size and the direction of each weight row apart.

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from loralab.lora.layer import LoRALinear


class DoRALinear(LoRALinear):
    """A `LoRALinear` whose output rows are rescaled to a trainable magnitude `lora_magnitude`."""

    def __init__(self, base: nn.Linear, *args, **kwargs) -> None:
        super().__init__(base, *args, **kwargs)
        self.lora_magnitude = nn.Parameter(self.lora_B.new_empty(self.out_features))
        self.init_magnitude()
        # the norm used by the last merge, which unmerge needs to divide it back out
        self.register_buffer("merged_norm", None, persistent=False)

    @torch.no_grad()
    def init_magnitude(self) -> None:
        """m = ||W + s B A||: the layer equals its base; call again if the base is replaced."""
        self.lora_magnitude.copy_(self.row_norm(self.base.weight))

    def adapter_parameters(self) -> tuple[nn.Parameter, ...]:
        return (self.lora_A, self.lora_B, self.lora_magnitude)

    def row_norm(self, weight: Tensor) -> Tensor:
        """||W + s B A|| per output row: the length the direction is divided by."""
        return torch.linalg.vector_norm(weight + self.delta_weight().to(weight.dtype), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:
            return self.base(x)
        weight = self.base.weight  # dequantized once here if the base is quantized
        result = F.linear(x, weight, self.base.bias)  # the base layer's own output
        x = self.dropout(x)
        update = F.linear(F.linear(x, self.lora_A) * self.scaling, self.lora_B)
        row_scale = self.lora_magnitude / self.row_norm(weight).detach()
        # m/||.|| * (W x + s B A x) + b, written as a correction to the base output; at init
        # row_scale is exactly 1 and the update exactly 0, so the base output comes back
        return result + (row_scale - 1) * F.linear(x, weight) + row_scale * update

    def fold_into(self, weight: Tensor) -> Tensor:
        norm = self.row_norm(weight)
        self.merged_norm = norm
        row_scale = (self.lora_magnitude / norm).to(weight.dtype)
        return row_scale[:, None] * (weight + self.delta_weight().to(weight.dtype))

    def take_out_of(self, merged_weight: Tensor) -> Tensor:
        row_scale = (self.lora_magnitude / self.merged_norm).to(merged_weight.dtype)
        self.merged_norm = None
        return merged_weight / row_scale[:, None] - self.delta_weight().to(merged_weight.dtype)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", dora=True"

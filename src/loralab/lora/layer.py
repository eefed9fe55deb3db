"""`LoRALinear`: a frozen `nn.Linear` plus a trainable low-rank update.

LoRA (Hu et al., 2021) keeps a pretrained weight W (out x in) frozen and learns its change
as a product of two thin matrices:

    h = W x + b + (alpha / r) * B A x,    A: r x in,  B: out x r,  r << min(in, out)

Only A and B train: r * (in + out) numbers instead of in * out. B starts at zero, so the
wrapped layer computes exactly what the base layer did and training starts from the
pretrained model. Because B A has the shape of W, the update can be folded into W after
training (`merge`), leaving a plain linear layer with no extra inference cost.

Two variants live here because they change only a number or a starting point:
  * rsLoRA (Kalajdzievski, 2023), `scaling_rule="rs"`: scale by alpha / sqrt(r) instead of
    alpha / r, so the update does not fade as the rank grows.
  * PiSSA (Meng et al., 2024), `init="pissa"`: start A and B from the top-r singular
    directions of W and leave W the residual (see `pissa.py`); the layer still equals the
    base at init, but training moves the principal directions instead of a random pair.
DoRA changes the forward itself and has its own class (`dora.py`).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from loralab.lora.errors import AdapterConfigError
from loralab.lora.pissa import pissa_factors
from loralab.lora.quantized_linear import QuantizedLinear

INITS = ("kaiming", "gaussian", "pissa")
SCALING_RULES = ("standard", "rs")


def lora_scaling(alpha: float, rank: int, rule: str = "standard") -> float:
    """alpha / r (LoRA) or alpha / sqrt(r) (rsLoRA): the factor in front of B @ A."""
    # alpha / r keeps the update's size roughly independent of the rank at small ranks;
    # rsLoRA shows that at large ranks it shrinks the update, and alpha / sqrt(r) does not
    return float(alpha) / (math.sqrt(rank) if rule == "rs" else rank)


def validate_lora_settings(
    rank: int, alpha: float, dropout: float, init: str, scaling_rule: str = "standard"
) -> None:
    """Fail before any weight is touched, with one sentence naming the key and the fix."""
    # bool is an int in Python; `rank: true` in a YAML file is a typo, not a rank of 1
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterConfigError(
            f"adapter.rank must be a positive integer, got {rank!r}; "
            "set adapter.rank=8 (or another value >= 1)."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not alpha > 0:
        raise AdapterConfigError(
            f"adapter.alpha must be a positive number, got {alpha!r}; "
            "set adapter.alpha=16 (a common choice is twice adapter.rank)."
        )
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise AdapterConfigError(
            f"adapter.dropout must be a number in [0, 1), got {dropout!r}; "
            "set adapter.dropout=0.0 (or a small value such as 0.05)."
        )
    if init not in INITS:
        raise AdapterConfigError(
            f"adapter.init must be one of {', '.join(INITS)}, got {init!r}; "
            "set adapter.init=kaiming."
        )
    if scaling_rule not in SCALING_RULES:
        raise AdapterConfigError(
            f"adapter.scaling must be one of {', '.join(SCALING_RULES)}, got {scaling_rule!r}; "
            "set adapter.scaling=standard (alpha/r) or adapter.scaling=rs (alpha/sqrt(r))."
        )


class LoRALinear(nn.Module):
    """Wraps a frozen `nn.Linear` and adds `scaling * B @ A` to its output."""

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        init: str = "kaiming",
        scaling_rule: str = "standard",
    ) -> None:
        super().__init__()
        validate_lora_settings(rank, alpha, dropout, init, scaling_rule)
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.init = init
        self.scaling_rule = scaling_rule
        # alpha / r, or alpha / sqrt(r) for rsLoRA: a learning rate tuned at one rank then
        # still works at another
        self.scaling = lora_scaling(alpha, rank, scaling_rule)
        self.merged = False
        # dropout acts on the adapter's input only; Identity skips the work when p == 0
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        # adapter tensors live where the base weight lives, in its precision
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        if init == "pissa":
            self.init_from_principal_components()
        else:
            self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A random, B zero: the update B @ A starts at exactly zero, yet its gradient does not."""
        if self.init == "pissa":
            raise RuntimeError("a PiSSA layer's base already holds the residual; rebuild it")
        if self.init == "kaiming":
            # the same init nn.Linear gives its own weight
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        else:
            nn.init.normal_(self.lora_A, mean=0.0, std=0.01)
        nn.init.zeros_(self.lora_B)

    @torch.no_grad()
    def init_from_principal_components(self) -> None:
        """PiSSA: B @ A takes W's top-r singular part, W keeps the rest; outputs do not change."""
        lora_a, lora_b = pissa_factors(self.base.weight, self.rank, self.scaling)
        self.lora_A.copy_(lora_a)
        self.lora_B.copy_(lora_b)
        self.base.weight.sub_(self.delta_weight())
        # kept (not saved) so an export can state the adapter relative to the original W
        self.register_buffer("initial_lora_A", lora_a.clone(), persistent=False)
        self.register_buffer("initial_lora_B", lora_b.clone(), persistent=False)

    def adapter_parameters(self) -> tuple[nn.Parameter, ...]:
        """The tensors this adapter adds to the base layer (and trains)."""
        return (self.lora_A, self.lora_B)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The base weight, for code that reads `.weight` of a linear layer (merged or not)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        if self.merged:
            # W already holds W + scaling * B @ A
            return result
        # go through the rank-r bottleneck first: two thin matmuls instead of one full one.
        # addmm computes result + scaling * low_rank @ B^T in one BLAS call, so neither the
        # scaling nor the sum costs an extra pass over the (..., out) tensor
        low_rank = F.linear(self.dropout(x), self.lora_A)
        summed = torch.addmm(
            result.reshape(-1, result.shape[-1]),
            low_rank.reshape(-1, self.rank),
            self.lora_B.t(),
            alpha=self.scaling,
        )
        return summed.view(result.shape)

    def delta_weight(self) -> torch.Tensor:
        """The change LoRA makes to W, shaped like W (out x in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def fold_into(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight of a plain linear layer that computes what this layer computes."""
        return weight + self.delta_weight().to(weight.dtype)

    def take_out_of(self, merged_weight: torch.Tensor) -> torch.Tensor:
        """The inverse of `fold_into`: the base weight back from a merged one."""
        return merged_weight - self.delta_weight().to(merged_weight.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W so inference costs one matmul; a second call does nothing."""
        if self.merged:
            return
        if isinstance(self.base, QuantizedLinear):
            # never requantize silently: the merged weight stays in full precision (it warns)
            self.base.hold_merged(self.fold_into(self.base.dequantize()))
        else:
            self.base.weight.copy_(self.fold_into(self.base.weight))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of W, e.g. to continue training after a merged evaluation."""
        if not self.merged:
            return
        if isinstance(self.base, QuantizedLinear):
            self.base.release_merged()  # the stored codes never changed
        else:
            self.base.weight.copy_(self.take_out_of(self.base.weight))
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}, "
            f"init={self.init}, merged={self.merged}"
        )

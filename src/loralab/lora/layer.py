"""`LoRALinear`: a frozen `nn.Linear` plus a trainable low-rank update.

LoRA (Hu et al., 2021) keeps a pretrained weight W (out x in) frozen and learns its change
as a product of two thin matrices:

    h = W x + b + (alpha / r) * B A x,    A: r x in,  B: out x r,  r << min(in, out)

Only A and B train: r * (in + out) numbers instead of in * out. B starts at zero, so the
wrapped layer computes exactly what the base layer did and training starts from the
pretrained model. Because B A has the shape of W, the update can be folded into W after
training (`merge`), leaving a plain linear layer with no extra inference cost.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch import nn

from loralab.lora.errors import AdapterConfigError

INITS = ("kaiming", "gaussian")


def validate_lora_settings(rank: int, alpha: float, dropout: float, init: str) -> None:
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


class LoRALinear(nn.Module):
    """Wraps a frozen `nn.Linear` and adds `scaling * B @ A` to its output."""

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        init: str = "kaiming",
    ) -> None:
        super().__init__()
        validate_lora_settings(rank, alpha, dropout, init)
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.init = init
        # alpha / r keeps the size of the update roughly independent of the rank,
        # so a learning rate tuned at one rank still works at another
        self.scaling = self.alpha / rank
        self.merged = False
        # dropout acts on the adapter's input only; Identity skips the work when p == 0
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        weight = base.weight
        factory = {"device": weight.device, "dtype": weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A random, B zero: the update B @ A starts at exactly zero, yet its gradient does not."""
        if self.init == "kaiming":
            # the same init nn.Linear gives its own weight
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        else:
            nn.init.normal_(self.lora_A, mean=0.0, std=0.01)
        nn.init.zeros_(self.lora_B)

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
        # go through the rank-r bottleneck first: two thin matmuls instead of one full one,
        # and scale the small (..., r) intermediate rather than the (..., out) output
        low_rank = F.linear(self.dropout(x), self.lora_A) * self.scaling
        return result + F.linear(low_rank, self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """The change LoRA makes to W, shaped like W (out x in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into W so inference costs one matmul; a second call does nothing."""
        if self.merged:
            return
        self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of W, e.g. to continue training after a merged evaluation."""
        if not self.merged:
            return
        self.base.weight.sub_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}, "
            f"merged={self.merged}"
        )

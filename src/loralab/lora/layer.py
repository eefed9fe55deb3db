"""`LoRALayer`: a frozen base layer plus a trainable low-rank update.

LoRA (Hu et al., 2021) keeps a pretrained weight W (out x in) frozen and learns its change
as a product of two thin matrices:

    h = W x + b + (alpha / r) * B A x,    A: r x in,  B: out x r,  r << min(in, out)

Only A and B train: r * (in + out) numbers instead of in * out. B starts at zero, so the
wrapped layer computes exactly what the base layer did and training starts from the
pretrained model. Because B A has the shape of W, the update can be folded into W after
training (`merge`), leaving a plain layer with no extra inference cost.

The layer is written once for every kind of base (`nn.Linear`, GPT-2's `Conv1D`,
`nn.Embedding`, `nn.Conv1d`/`nn.Conv2d`): what differs between them (the shapes of A and B,
how B A x is computed, the layout of B @ A) is its `LayerType` (`layer_types.py`). The
scaling is alpha / r; another rule is a variant's (`register_scaling_rule`: rsLoRA's
alpha / sqrt(r) is in `variants/plain.py`), and so are the other variants (`variants/`).
A quantized base is merged through its `QuantizedBase` methods (`quantized_base.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import torch
from torch import Tensor, nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer_types import LayerType, layer_type_of
from loralab.lora.quantized_base import QuantizedBase, warn_merged_in_float


@dataclass(frozen=True)
class ScalingRule:
    """How the factor in front of B @ A follows from alpha and the rank: alpha / divisor(r)."""

    divisor: Callable[[int], float]
    formula: str  # as the config error shows it, e.g. alpha/r


# adapter.scaling value -> its rule; alpha / r keeps the update's size roughly independent of
# the rank at small ranks; a variant adds its own rule (`register_scaling_rule`)
SCALING_RULES: dict[str, ScalingRule] = {"standard": ScalingRule(lambda rank: rank, "alpha/r")}


def register_scaling_rule(name: str, rule: ScalingRule) -> None:
    """Make `adapter.scaling=<name>` (and `LoRALayer(scaling_rule=name)`) scale by `rule`."""
    SCALING_RULES[name] = rule


def lora_scaling(alpha: float, rank: int, rule: str = "standard") -> float:
    """alpha / r (LoRA), or what another registered rule gives: the factor in front of B @ A."""
    return float(alpha) / SCALING_RULES[rule].divisor(rank)


def alpha_for(scaling: float, rank: int, rule: str = "standard") -> float:
    """The alpha that gives `scaling` at `rank` under `rule` (an export at another rank)."""
    return scaling * SCALING_RULES[rule].divisor(rank)


def validate_lora_settings(
    rank: int, alpha: float, dropout: float, scaling_rule: str = "standard"
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
    if scaling_rule not in SCALING_RULES:
        fixes = [f"adapter.scaling={name} ({r.formula})" for name, r in SCALING_RULES.items()]
        fix = f"{', '.join(fixes[:-1])} or {fixes[-1]}" if len(fixes) > 1 else fixes[0]
        raise AdapterConfigError(
            f"adapter.scaling must be one of {', '.join(SCALING_RULES)}, got {scaling_rule!r}; "
            f"set {fix}."
        )


class LoRALayer(nn.Module):
    """Wraps a frozen base layer and adds `scaling * B @ A` to its output."""

    # does the change this layer makes to W depend on W itself? (not for plain LoRA: it is
    # scaling * B @ A whatever W is; DoRA rescales W's rows)
    update_needs_base = False

    def __init__(
        self,
        base: nn.Module,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        init: str = "kaiming",
        scaling_rule: str = "standard",
    ) -> None:
        super().__init__()
        validate_lora_settings(rank, alpha, dropout, scaling_rule)
        layer_type = layer_type_of(base)
        if layer_type is None:
            raise AdapterConfigError(
                f"LoRA cannot wrap a {type(base).__name__} layer; adapt a layer of a "
                "registered layer type (see loralab.lora.layer_types)."
            )
        self.layer_type: LayerType = layer_type
        self.base = base
        self.base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha)
        self.init = init
        self.scaling_rule = scaling_rule
        # alpha / r, or another registered rule (rsLoRA: alpha / sqrt(r)): a learning rate
        # tuned at one rank then still works at another
        self.scaling = lora_scaling(alpha, rank, scaling_rule)
        self.merged = False
        self.dropout_rate = float(dropout)
        # dropout acts on the adapter's input only (never on token ids); Identity skips the
        # work when p == 0
        use_dropout = dropout > 0 and layer_type.takes_dropout()
        self.dropout = nn.Dropout(dropout) if use_dropout else nn.Identity()

        # adapter tensors live where the base weight lives, in its precision
        weight = layer_type.weight(base)
        factory = {"device": weight.device, "dtype": weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(layer_type.a_shape(base, rank), **factory))
        self.lora_B = nn.Parameter(torch.zeros(layer_type.b_shape(base, rank), **factory))
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A random, B zero: the update B @ A starts at exactly zero, yet its gradient does not."""
        self.layer_type.init_a(self.lora_A, self.init)
        nn.init.zeros_(self.lora_B)

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        """The tensors this adapter adds to the base layer, by name: what trains (unless a
        variant freezes one: LoRA-FA's A) and what adapter files hold."""
        return {"lora_A": self.lora_A, "lora_B": self.lora_B}

    def peft_names(self) -> dict[str, str]:
        """Our adapter tensor name -> the key suffix PEFT saves it under."""
        return dict(self.layer_type.peft_names)

    def peft_state(self) -> dict[str, Tensor]:
        """The adapter's tensors as PEFT saves them: key suffix -> tensor."""
        names = self.peft_names()
        return {names[name]: t.detach() for name, t in self.adapter_parameters().items()}

    def base_changed(self) -> None:
        """Called when the base weight was replaced (e.g. quantized); a no-op for plain LoRA."""

    @property
    def in_features(self) -> int:
        return self.layer_type.features(self.base)[0]

    @property
    def out_features(self) -> int:
        return self.layer_type.features(self.base)[1]

    @property
    def weight(self) -> Tensor:
        """The base weight, for code that reads `.weight` of the layer (merged or not)."""
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def low_rank(self, x: Tensor) -> Tensor:
        """B A x (unscaled), shaped like the base layer's output: what a variant builds on."""
        return self.layer_type.low_rank(self.base, x, self.lora_A, self.lora_B)

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        if self.merged:
            # W already holds W + scaling * B @ A
            return result
        return self.layer_type.add_update(
            self.base, result, self.dropout(x), self.lora_A, self.lora_B, self.scaling
        )

    def delta_weight(self) -> Tensor:
        """The change LoRA makes to W, shaped like W."""
        return self.layer_type.delta(self.lora_A, self.lora_B) * self.scaling

    def fold_into(self, weight: Tensor) -> Tensor:
        """The weight of a plain base layer that computes what this layer computes."""
        return weight + self.delta_weight().to(weight.dtype)

    def take_out_of(self, merged_weight: Tensor) -> Tensor:
        """The inverse of `fold_into`: the base weight back from a merged one."""
        return merged_weight - self.delta_weight().to(merged_weight.dtype)

    @torch.no_grad()
    def merge(self, warn: bool = True) -> None:
        """Fold the update into W so inference costs one matmul; a second call does nothing.

        A quantized base keeps the merged weight in float and says so (`warn`; a model-wide
        merge says it once for all its layers).
        """
        if self.merged:
            return
        if isinstance(self.base, QuantizedBase):
            # never requantize silently: the merged weight stays in full precision
            self.base.hold_merged(self.fold_into(self.base.dequantize()))
            if warn:
                warn_merged_in_float([self.base])
        else:
            self.base.weight.copy_(self.fold_into(self.base.weight))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of W, e.g. to continue training after a merged evaluation."""
        if not self.merged:
            return
        if isinstance(self.base, QuantizedBase):
            self.base.release_merged()  # the stored codes never changed
        else:
            self.base.weight.copy_(self.take_out_of(self.base.weight))
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"{self.layer_type.name}, in={self.in_features}, out={self.out_features}, "
            f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}, "
            f"init={self.init}, merged={self.merged}"
        )

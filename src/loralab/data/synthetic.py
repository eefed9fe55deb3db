"""Synthetic token-pattern classification: a pretraining task and a fine-tuning task that
needs what pretraining taught.

Real token ids 1..vocab_size-1 are split into `n_groups` contiguous ranges ("groups"); id 0
is padding. Pretraining (`majority_group`) asks which group dominates a sequence, which
teaches the backbone the group of every token. Fine-tuning (`low_high`) asks whether the
low half of the groups or the high half holds more of a sequence's tokens: easy for a
pretrained backbone, hard for small adapters on a random one, which has no idea which ids
are "low". Every dataset is a pure function of its arguments and seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

from loralab.data.base import SplitDataModule
from loralab.data.dataset import TensorDictDataset
from loralab.errors import ConfigError

# Per-sample probability that a token comes from the sample's own half / group.
DEFAULT_P = {"low_high": (0.55, 0.8), "majority_group": (0.3, 0.6), "group_parity": (0.3, 0.6)}
RULES = tuple(DEFAULT_P)
SPLITS = ("train", "val", "test")


def group_bounds(vocab_size: int, n_groups: int) -> Tensor:
    """First id of each group, then vocab_size: group g holds ids [b[g], b[g+1])."""
    return torch.tensor([1 + g * (vocab_size - 1) // n_groups for g in range(n_groups + 1)])


def group_counts(tokens: Tensor, mask: Tensor, bounds: Tensor) -> Tensor:
    """How many real tokens of each row fall in each group: [n, n_groups]."""
    groups = torch.bucketize(tokens, bounds[1:], right=True).clamp(max=len(bounds) - 2)
    return (F.one_hot(groups, len(bounds) - 1) * mask.unsqueeze(-1)).sum(dim=1)


def uniform_ids(lo: Tensor, hi: Tensor, shape: torch.Size, g: Generator) -> Tensor:
    """Ids uniform in [lo, hi), with lo/hi broadcast against `shape`."""
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return torch.minimum(lo + (u * (hi - lo)).long(), hi - 1)


def until_no_ties(
    mask: Tensor, draw: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
) -> tuple[Tensor, Tensor]:
    """Tokens and labels of every row, drawn by `draw(rows, row_mask)` -> (tokens, labels,
    tied); a tie has no true label, so tied rows are drawn again until none is left."""
    n = mask.shape[0]
    tokens, labels = torch.zeros(mask.shape, dtype=torch.long), torch.zeros(n, dtype=torch.long)
    todo = torch.arange(n)
    while len(todo):
        tokens[todo], labels[todo], tied = draw(todo, mask[todo])
        todo = todo[tied]
    return tokens, labels


def sample_low_high(mask: Tensor, bounds: Tensor, g: Generator, p_min: float, p_max: float):
    """Each token is from the sample's target half with probability p, else from the other
    half; the label (0 = low, 1 = high) is the half that really holds more tokens."""
    n, n_groups = mask.shape[0], len(bounds) - 1
    low, mid, end = bounds[0], bounds[n_groups // 2], bounds[-1]
    target_high = torch.randint(0, 2, (n,), generator=g).bool()
    p = p_min + (p_max - p_min) * torch.rand(n, generator=g)

    def draw(rows: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        in_high = (torch.rand(m.shape, generator=g) < p[rows, None]) == target_high[rows, None]
        lo, hi = torch.where(in_high, mid, low), torch.where(in_high, end, mid)
        n_high = (in_high & m).sum(dim=1)
        n_low = m.sum(dim=1) - n_high
        return uniform_ids(lo, hi, m.shape, g), (n_high > n_low).long(), n_high == n_low

    return until_no_ties(mask, draw)


def sample_majority_group(mask: Tensor, bounds: Tensor, g: Generator, p_min: float, p_max: float):
    """Each token is from the sample's dominant group with probability p, else uniform over
    all real ids; the label is the group that really holds the most tokens."""
    n, n_groups = mask.shape[0], len(bounds) - 1
    dominant = torch.randint(0, n_groups, (n,), generator=g)
    p = p_min + (p_max - p_min) * torch.rand(n, generator=g)

    def draw(rows: Tensor, m: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        from_dominant = torch.rand(m.shape, generator=g) < p[rows, None]
        d = dominant[rows, None]
        own = uniform_ids(bounds[d], bounds[d + 1], m.shape, g)
        anywhere = uniform_ids(bounds[0], bounds[-1], m.shape, g)
        tokens = torch.where(from_dominant, own, anywhere)
        top2 = group_counts(tokens, m, bounds).topk(2, dim=1)
        return tokens, top2.indices[:, 0], top2.values[:, 0] == top2.values[:, 1]

    return until_no_ties(mask, draw)


def sample_group_parity(mask: Tensor, bounds: Tensor, g: Generator, p_min: float, p_max: float):
    """Majority-group sequences labelled by the parity of the dominant group's index: a second
    binary task over the same vocabulary (e.g. for a second adapter on the same base)."""
    tokens, groups = sample_majority_group(mask, bounds, g, p_min, p_max)
    return tokens, groups % 2


SAMPLERS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "low_high": sample_low_high,
    "group_parity": sample_group_parity,
    "majority_group": sample_majority_group,
}


def check_settings(
    rule: str, vocab_size: int, seq_len: int, min_len: int | None, n_groups: int, rule_kwargs: dict
) -> tuple[float, float]:
    """Fail early, naming the `data.*` key; returns the rule's (p_min, p_max)."""
    if rule not in SAMPLERS:
        raise ConfigError(f"data.rule={rule!r} is unknown; use one of {list(RULES)}.")
    if n_groups < 2 or vocab_size - 1 < n_groups:
        raise ConfigError(
            f"data.vocab_size={vocab_size} is too small for data.n_groups={n_groups}; "
            "every group needs at least one real id (vocab_size >= n_groups + 1, n_groups >= 2)."
        )
    if seq_len < 1 or not (min_len is None or 1 <= min_len <= seq_len):
        raise ConfigError(f"data.min_len={min_len} must lie in [1, data.seq_len={seq_len}].")
    unknown = set(rule_kwargs) - {"p_min", "p_max"}
    if unknown:
        raise ConfigError(f"data.{sorted(unknown)[0]} is not an option of data.rule={rule!r}.")
    p_min = float(rule_kwargs.get("p_min", DEFAULT_P[rule][0]))
    p_max = float(rule_kwargs.get("p_max", DEFAULT_P[rule][1]))
    if not 0.0 <= p_min <= p_max <= 1.0:
        raise ConfigError(
            f"data.p_min={p_min} and data.p_max={p_max} need 0 <= p_min <= p_max <= 1."
        )
    return p_min, p_max


def make_token_dataset(
    rule: str,
    n: int,
    vocab_size: int,
    seq_len: int,
    seed: int,
    min_len: int | None = None,
    n_groups: int = 8,
    **rule_kwargs: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """n right-padded sequences of the given rule: (input_ids, attention_mask, labels)."""
    p_min, p_max = check_settings(rule, vocab_size, seq_len, min_len, n_groups, rule_kwargs)
    g = torch.Generator().manual_seed(seed)  # never the global RNG: data must not shift with it
    lengths = torch.randint(min_len or seq_len, seq_len + 1, (n,), generator=g)
    mask = torch.arange(seq_len) < lengths[:, None]
    bounds = group_bounds(vocab_size, n_groups)
    tokens, labels = SAMPLERS[rule](mask, bounds, g, p_min, p_max)
    return tokens.masked_fill(~mask, 0), mask, labels


class SyntheticDataModule(SplitDataModule):
    """Train/val/test splits of one synthetic rule, from disjoint seeds derived from `seed`."""

    def __init__(
        self,
        rule: str = "low_high",
        vocab_size: int = 512,
        seq_len: int = 32,
        min_len: int | None = None,
        n_groups: int = 8,
        n_train: int = 4000,
        n_val: int = 1000,
        n_test: int = 1000,
        batch_size: int = 64,
        seed: int = 1234,
        num_workers: int = 0,
        num_classes: int | None = None,
        **rule_kwargs: float,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_settings(rule, vocab_size, seq_len, min_len, n_groups, rule_kwargs)
        # configs state num_classes so the model and metrics can read it; it must agree
        if num_classes is not None and num_classes != self.num_classes:
            raise ConfigError(
                f"data.num_classes={num_classes} does not match data.rule={rule!r}, which has "
                f"{self.num_classes} classes; set data.num_classes={self.num_classes}."
            )
        self.rule_kwargs = dict(rule_kwargs)  # save_hyperparameters flattens these into hparams
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.splits: dict[str, TensorDictDataset] = {}

    @property
    def num_classes(self) -> int:
        return self.hparams.n_groups if self.hparams.rule == "majority_group" else 2

    def split_seed(self, split: str) -> int:
        # 3 * seed + i never collides across splits, nor across different base seeds
        return 3 * self.hparams.seed + SPLITS.index(split)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        for split in SPLITS:
            if split in self.splits:  # built once; fit then test reuses the same splits
                continue
            ids, mask, labels = make_token_dataset(
                hp.rule,
                n=self.sizes[split],
                vocab_size=hp.vocab_size,
                seq_len=hp.seq_len,
                seed=self.split_seed(split),
                min_len=hp.min_len,
                n_groups=hp.n_groups,
                **self.rule_kwargs,
            )
            self.splits[split] = TensorDictDataset(
                input_ids=ids, attention_mask=mask, labels=labels
            )

"""The contract between a data module and the rest of a run, written as a base class.

A run is built in one direction: data -> model -> task. The data module is built first and
declares what the later stages may read from it, in config interpolations (`${data.vocab_size}`,
`${data.num_classes}`) and in code (the text-sample callback, `loralab.generate`):

- `num_classes`: the number of labels of a classification task (None for language modelling);
- `vocab_size`: how many token ids the data emits, which sizes a model's embedding;
- `tokenizer`: what turns text into those ids and back (None for synthetic ids);
- `sample_prompt()`: a short text in the style of the data, for sampling (None if it has none);
- `split_size(split)`: how many examples a split holds, e.g. the test-set size of an accuracy;
- `generation_set(split)`: prompts whose answers are checked by generation (exact match), as
  a `GenerationSet`; None for data without answers to check.

Every batch is a dict: `input_ids`, `attention_mask` (where there is padding) and `labels`.
`SplitDataModule` implements the loaders once: its subclasses fill `self.splits` in `setup`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from loralab.data.loaders import resumable_loader


@dataclass(frozen=True)
class GenerationSet:
    """Prompts a model answers by generation, the answers expected, and how to read its output.

    `prompts` are what a reader sees (the user's text), `prompt_ids` what the model reads
    (the formatted prompt, tokenised); generation stops at any of `stop_ids`; `decode` turns
    the generated ids into the text compared with `answers`.
    """

    prompts: Sequence[str]
    prompt_ids: Sequence[Sequence[int]]
    answers: Sequence[str | tuple[str, ...]]  # a tuple: several answers accepted
    stop_ids: frozenset[int]
    pad_id: int
    decode: Callable[[Sequence[int]], str]
    # a label per example (e.g. its task family), to score each group on its own; or None
    groups: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.answers)

    def head(self, n: int | None) -> GenerationSet:
        """The first n examples (all of them for None): a fixed sample of a fixed split."""
        if n is None or n >= len(self):
            return self
        return dataclasses.replace(
            self,
            prompts=self.prompts[:n],
            prompt_ids=self.prompt_ids[:n],
            answers=self.answers[:n],
            groups=self.groups[:n] if self.groups is not None else None,
        )


class SplitDataModule(L.LightningDataModule):
    """A data module whose `setup` fills `self.splits` (train/val/test datasets) and whose
    loaders are all `resumable_loader`s: shuffled per (seed, epoch), resumable mid-epoch.

    Subclasses save `batch_size`, `seed` and `num_workers` among their hyper-parameters and
    may override `collate_fn` (None: torch's default collation).
    """

    splits: dict[str, Any]

    @property
    def num_classes(self) -> int | None:
        """The number of labels of a classification task; None for language modelling."""
        return self.hparams.get("num_classes")

    @property
    def vocab_size(self) -> int | None:
        """How many token ids the data emits (ids are 0 .. vocab_size - 1)."""
        return self.hparams.get("vocab_size")

    @property
    def tokenizer(self) -> Any:
        """What turns text into ids and back; None for data that is ids already."""
        return None

    def sample_prompt(self) -> str | None:
        """A short text in the style of the data to continue when sampling; None if none."""
        return None

    def generation_set(self, split: str) -> GenerationSet | None:
        """The split's prompts with answers checked by generation; None if the data has none."""
        return None

    @property
    def collate_fn(self) -> Callable[[list[Any]], Any] | None:
        return None

    def example_lengths(self, split: str) -> Sequence[int] | None:
        """Each example's length, for data whose batches pad to their longest row: its
        loaders then batch examples of similar length. None: examples of one length."""
        return None

    def split_size(self, split: str) -> int | None:
        """Examples in a built split (None before `setup`): the n of a test accuracy."""
        dataset = getattr(self, "splits", {}).get(split)
        return len(dataset) if dataset is not None else None

    def loader(self, split: str, shuffle: bool) -> DataLoader:
        return resumable_loader(
            self.splits[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            seed=self.hparams.seed,
            num_workers=self.hparams.num_workers,
            collate_fn=self.collate_fn,
            lengths=self.example_lengths(split),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False)

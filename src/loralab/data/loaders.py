"""Training data that a resumed run sees in exactly the order the interrupted run would have.

Two things make a restart reproduce the data stream:

- `EpochShuffleSampler`: the shuffle order is a pure function of (seed, epoch), so a fresh
  process that restores epoch 3 draws epoch 3's order, not the first one of a new generator.
  It subclasses `RandomSampler`, so under DDP Lightning swaps it for a `DistributedSampler`,
  which draws the same permutation and deals it out to the ranks.
- `ResumableDataLoader`: Lightning stores the `state_dict()` of a training loader in every
  checkpoint and hands it back to `load_state_dict()` before iterating on resume. The state
  is the epoch and how many batches training consumed; the resumed iterator skips those.

`loralab.data.base.SplitDataModule`, the base of every data module here, hands out these
loaders, so every kind of data resumes exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler


class EpochShuffleSampler(RandomSampler):
    """A random permutation per epoch that depends only on (seed, epoch).

    It is the permutation torch's `DistributedSampler` draws for the same seed and epoch, so
    one process with batch 2B and two DDP processes with batch B each (Lightning seeds the
    DistributedSampler with the run's seed) train on exactly the same global batches.
    """

    def __init__(self, data_source: Sized, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at the start of every epoch (and with the restored epoch)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position within an epoch survives a checkpoint round trip.

    For map-style datasets (with a length): Lightning then fetches no batch ahead, so every
    batch handed out when a checkpoint is written has been trained on.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out = 0  # batches of the current epoch given to the training loop
        self._resume_at = 0  # batches the next iterator skips (set by load_state_dict)

    def __iter__(self) -> Iterator[Any]:
        skip, self._resume_at = self._resume_at, 0
        self._handed_out = skip
        batches = super().__iter__()
        for _ in range(skip):  # fast-forward: the skipped batches are loaded, then dropped
            next(batches, None)
        for batch in batches:
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.sampler, "epoch", 0)), "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(state["epoch"])
        self._resume_at = state["batches"]


def resumable_loader(
    dataset: Any,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    **kwargs: Any,
) -> ResumableDataLoader:
    """The loader every data module hands Lightning: seeded per epoch and resumable mid-epoch."""
    return ResumableDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(dataset, seed) if shuffle else None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        **kwargs,
    )

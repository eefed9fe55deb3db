"""Checkpoints a run resumes from exactly: a kill never leaves one half-written, and a resumed
run's training loader gets its saved position back."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from loralab import compat
from loralab.io import temporary_path


class AtomicModelCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that writes each file under a temporary name, then renames it.

    Lightning writes a checkpoint in place: a SIGKILL (or an out-of-memory kill, a node
    failure) during the write leaves a truncated `last.ckpt` that no run can resume from.
    Here the old file stays intact until the new one is complete; a kill leaves at worst a
    stray `.last.ckpt.<pid>.<random>.tmp` that nothing reads.

    A `fast_dev_run` writes no checkpoint at all: Lightning skips its per-step and
    per-validation saves, but its end-of-fit `save_last` does not ask.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:  # a private hook
        tmp = temporary_path(filepath)
        tmp = Path(trainer.strategy.broadcast(str(tmp)))  # one name on every rank
        try:
            super()._save_checkpoint(trainer, str(tmp))
            if trainer.is_global_zero:
                os.replace(tmp, filepath)
        finally:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
        trainer.strategy.barrier("AtomicModelCheckpoint")
        # the parent recorded the temporary name; the file now lives under its real one
        compat.record_saved_checkpoint(self, filepath)


class RestoreDataPosition(L.Callback):
    """Makes Lightning load the checkpointed state of a resumable training loader.

    Lightning restores a loader's `state_dict` only when it builds the loader after the
    checkpoint is read. A task whose `configure_optimizers` asks for
    `trainer.estimated_stepping_batches` (our warmup + cosine schedule does) makes Lightning
    build the loader earlier, and the saved position is then silently dropped: a run resumed
    mid-epoch would restart the epoch's data from its first batch. Loaders such as
    `loralab.data.ResumableDataLoader` start iterating lazily, at the first batch, so loading
    the state at `on_train_start` is still in time.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a no-op unless the fit loop is restarting and holds loader states not yet loaded
        compat.load_saved_loader_states(trainer)

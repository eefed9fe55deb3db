"""Hand a resumed run's training loader its saved position before the first batch."""

from __future__ import annotations

import lightning as L

from loralab.run import compat


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

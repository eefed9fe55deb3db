"""Every checkpoint carries its run's config, base identity and wall time so far, so a later
process can rebuild the run and trust it (the keys and what reads them: `loralab.keys`)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from loralab.keys import BASE_KEY, CONFIG_KEY, WALL_TIME_KEY


class EmbedRunConfig(L.Callback):
    """Writes the run's config, base identity and wall time so far into every checkpoint."""

    def __init__(
        self,
        config: dict[str, Any],
        base_identity: dict[str, Any] | None = None,
        started: float | None = None,
    ) -> None:
        self.config = config
        self.base_identity = base_identity
        # time.perf_counter() when this process started the run; earlier parts come on resume
        self.started = time.perf_counter() if started is None else started
        self.earlier_parts_s = 0.0

    def wall_time_s(self) -> float:
        """Seconds the run has taken: this process's part plus the parts it resumed from."""
        return self.earlier_parts_s + time.perf_counter() - self.started

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:  # noqa: ANN001
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[WALL_TIME_KEY] = self.wall_time_s()
        if self.base_identity is not None:
            checkpoint[BASE_KEY] = self.base_identity

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:  # noqa: ANN001
        # a resumed fit continues the run; testing best.ckpt afterwards loads it too, and
        # must not count the time up to that checkpoint a second time
        if trainer.state.fn == TrainerFn.FITTING:
            self.earlier_parts_s = float(checkpoint.get(WALL_TIME_KEY, 0.0))

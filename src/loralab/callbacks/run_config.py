"""What each checkpoint carries about its run, so a later process can rebuild and trust it.

- the resolved run config (`CONFIG_KEY`): `loralab.eval`, merge and generate rebuild the run
  from it, and a resume compares it with the resuming config;
- the identity of the base the adapter trains on (`BASE_KEY`, a `BaseIdentity` as plain
  values): an adapter-only checkpoint is refused on another base;
- the wall time the run has taken up to this checkpoint (`WALL_TIME_KEY`), so a resumed run
  reports the time of all its parts.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

CONFIG_KEY = "loralab_config"
BASE_KEY = "loralab_base"
WALL_TIME_KEY = "loralab_wall_time_s"


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

"""Store the resolved run config inside each checkpoint, so `loralab.eval` can rebuild the run."""

from __future__ import annotations

from typing import Any

import lightning as L

CONFIG_KEY = "loralab_config"


class EmbedRunConfig(L.Callback):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:  # noqa: ANN001
        checkpoint[CONFIG_KEY] = self.config

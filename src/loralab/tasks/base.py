"""What every task module shares: it trains whatever requires grad and never asks which adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from loralab.models.held_casts import held_casts
from loralab.models.outputs import logits_of
from loralab.tasks.optim import build_optimizer, fill_frozen_tensors, keep_trained_tensors_only

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class AdapterBlindTask(L.LightningModule):
    """Calls `model(**inputs)`, optimises its trainable parameters, checkpoints what trained."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        warmup_ratio: float = 0.0,
        cosine: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.warmup_ratio = warmup_ratio
        self.cosine = cosine

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        # under bf16-mixed the frozen weights are cast once for the run, not at every step
        with held_casts(self.model):
            return logits_of(self.model(**inputs))

    def configure_optimizers(self) -> Any:
        return build_optimizer(self, self.optimizer_factory, self.warmup_ratio, self.cosine)

    # Checkpoints hold what training changed: adapters (+ trained heads) for LoRA, all for full.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep_trained_tensors_only(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fill_frozen_tensors(self, checkpoint)

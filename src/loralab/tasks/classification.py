"""Sequence classification as a LightningModule that never asks which adapter it trains."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from loralab.tasks.base import AdapterBlindTask, OptimizerFactory


class ClassificationTask(AdapterBlindTask):
    """Cross-entropy training of `model(**inputs) -> logits` on whatever requires grad.

    Full fine-tuning and every adapter look the same from here: the adapter decided which
    parameters train before this module was built.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        warmup_ratio: float = 0.0,
        cosine: bool = False,
    ) -> None:
        super().__init__(model, optimizer, warmup_ratio, cosine)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.restored_best: float | None = None  # val/acc_best of the run a resume continues

    def _shared_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"])
        return loss, logits.argmax(dim=-1)

    def on_train_start(self) -> None:
        # sanity-check validation must not count towards the best accuracy; a resumed run
        # starts from the best its first part reached
        self.val_acc_best.reset()
        if self.restored_best is not None:
            self.val_acc_best(torch.tensor(self.restored_best))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.val_acc_best.update_called:
            checkpoint["val_acc_best"] = float(self.val_acc_best.compute())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.restored_best = checkpoint.get("val_acc_best")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, preds = self._shared_step(batch)
        self.train_loss(loss)
        self.train_acc(preds, batch["labels"])
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, preds = self._shared_step(batch)
        self.val_loss(loss)
        self.val_acc(preds, batch["labels"])
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, preds = self._shared_step(batch)
        self.test_loss(loss)
        self.test_acc(preds, batch["labels"])
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)

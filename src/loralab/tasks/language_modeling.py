"""Causal language modelling as a LightningModule that never asks which adapter it trains."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from loralab.tasks.adapter_blind import AdapterBlindTask, OptimizerFactory

IGNORE_INDEX = -100  # label of a position that has no next token to predict (padding)


class LanguageModelingTask(AdapterBlindTask):
    """Next-token cross-entropy of `model(input_ids) -> logits [B, T, V]` on whatever trains.

    Logs train/loss, val/loss, val/ppl, test/loss, test/ppl (perplexity = exp of the mean
    per-token loss), and val/loss_start, val/ppl_start: the model before its first training
    step, which for a fine-tuning run is the pretrained base on the new text.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        warmup_ratio: float = 0.0,
        cosine: bool = False,
        log_start_ppl: bool = True,
    ) -> None:
        super().__init__(model, optimizer, warmup_ratio, cosine)
        self.log_start_ppl = log_start_ppl
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()

    def token_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """Mean cross-entropy over the batch's predicted tokens, and how many there were."""
        logits, labels = self(batch), batch["labels"]
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
        )
        return loss, int((labels != IGNORE_INDEX).sum())

    def on_train_start(self) -> None:
        if self.log_start_ppl and self.trainer.datamodule is not None:
            loss = self.mean_loss(self.trainer.datamodule.val_dataloader())
            self.log("val/loss_start", loss, on_epoch=True)
            self.log("val/ppl_start", math.exp(min(loss, 50.0)), on_epoch=True)

    @torch.no_grad()
    def mean_loss(self, loader: Iterable[dict[str, Tensor]]) -> float:
        """Per-token mean loss over a whole loader, in eval mode, leaving the mode as it was."""
        was_training = self.training
        self.eval()
        total, count = 0.0, 0
        try:
            for batch in loader:
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                loss, n = self.token_loss(batch)
                total, count = total + float(loss) * n, count + n
        finally:
            self.train(was_training)
        return total / max(count, 1)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self.token_loss(batch)
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, n = self.token_loss(batch)
        self.val_loss(loss, n)  # weighted by tokens: a short last batch counts for less
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/ppl", perplexity(self.val_loss.compute()), prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, n = self.token_loss(batch)
        self.test_loss(loss, n)
        self.log("test/loss", self.test_loss, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", perplexity(self.test_loss.compute()))


def perplexity(mean_loss: Tensor) -> Tensor:
    """exp(loss), clamped so a diverged run logs a huge number instead of inf."""
    return torch.exp(mean_loss.clamp(max=50.0))

"""Checks that a run is sound: it stops the moment training diverges, before a NaN reaches the
weights or a checkpoint, and after fit it proves that merging the adapters changes nothing."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import Tensor

from loralab.errors import ConfigError
from loralab.keys import MERGE_DIFF
from loralab.lora import lora_layers
from loralab.measure.merge_diff import max_merge_diff

log = logging.getLogger(__name__)

FIX = "lower adapter.lr, keep trainer.gradient_clip_val set, or try trainer.precision=32-true"


class NonFiniteLossError(ConfigError):
    """Training produced a NaN/inf loss or weight; the message names the step and the fix."""


def last_checkpoint(trainer: L.Trainer) -> str:
    """The newest checkpoint this run wrote, for the error message."""
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        if path:
            return path
    return "none (no checkpoint was written yet)"


class NonFiniteLossGuard(L.Callback):
    """Raises `NonFiniteLossError` on a NaN/inf training loss, before its backward pass.

    The loss is checked before backward, so a non-finite loss never produces an update;
    the trained weights are checked after each optimizer step, before checkpoint callbacks
    (which Lightning always runs last) could save them. The last checkpoint on disk is
    therefore always one from finite weights. Under DDP the decision is taken jointly, so
    every rank stops at the same step instead of one rank hanging in the next all-reduce.
    """

    def __init__(self, check_weights: bool = True) -> None:
        self.check_weights = check_weights

    def _stop_if(self, trainer: L.Trainer, bad: bool, what: str) -> None:
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(
                f"{what} at global step {trainer.global_step} (epoch {trainer.current_epoch}); "
                f"the run stopped and the last good checkpoint is {last_checkpoint(trainer)}: "
                f"{FIX}."
            )

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        value = loss.detach()
        self._stop_if(
            trainer, not bool(torch.isfinite(value).all()), f"the training loss is {value.item()}"
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if not self.check_weights:
            return
        trained = [p.detach() for p in pl_module.parameters() if p.requires_grad]
        if not trained:
            return
        # one reduction and one host sync: the sum is finite only if every weight is
        total = torch.stack([p.float().sum() for p in trained]).sum()
        self._stop_if(
            trainer, not bool(torch.isfinite(total)), "a trained weight became non-finite"
        )


class MergeCheck(L.Callback):
    """Compares merged and unmerged outputs on one validation batch; no-op without LoRA layers."""

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not any(True for _ in lora_layers(pl_module)) or trainer.datamodule is None:
            return
        batch = next(iter(trainer.datamodule.val_dataloader()))
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        diff = max_merge_diff(pl_module.model, **inputs)
        log.info("merged vs unmerged outputs on a validation batch: max |diff| = %.3g", diff)
        trainer.callback_metrics[MERGE_DIFF] = torch.tensor(diff)
        for logger in trainer.loggers:
            logger.log_metrics({MERGE_DIFF: diff}, step=trainer.global_step)

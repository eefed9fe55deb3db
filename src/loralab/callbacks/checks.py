"""Stop a run the moment training diverges, before a NaN reaches the weights or a checkpoint."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from loralab.errors import ConfigError

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

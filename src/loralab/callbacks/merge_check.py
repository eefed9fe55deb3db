"""After fit, prove that folding the adapters into the weights changes nothing."""

from __future__ import annotations

import logging

import lightning as L
import torch

from loralab.lora import lora_layers
from loralab.measure.merge_diff import MERGE_DIFF, max_merge_diff

log = logging.getLogger(__name__)

METRIC = MERGE_DIFF


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
        trainer.callback_metrics[METRIC] = torch.tensor(diff)
        for logger in trainer.loggers:
            logger.log_metrics({METRIC: diff}, step=trainer.global_step)

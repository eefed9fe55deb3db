"""What a run reports to its loggers beyond the task's own metrics, and what it returns."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from loralab.lora import count_parameters

# the config keys that tell runs apart in TensorBoard's HPARAMS tab
HPARAM_KEYS = (
    "run_name",
    "seed",
    "adapter.name",
    "adapter.rank",
    "adapter.alpha",
    "adapter.lr",
    "adapter.dropout",
    "adapter.targets",
    "data.rule",
    "trainer.max_epochs",
    "trainer.max_steps",
)


def log_parameter_counts(trainer: L.Trainer, model: nn.Module) -> None:
    counts = count_parameters(model)
    for logger in trainer.loggers:
        logger.log_metrics(
            {
                "params/trainable": counts.trainable,
                "params/total": counts.total,
                "params/trainable_percent": counts.percent,
            },
            step=0,
        )


def scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The trainer's last logged metrics that are single numbers."""
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def _hparams(cfg: DictConfig) -> dict[str, Any]:
    values = {}
    for key in HPARAM_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            values[key] = (
                ",".join(map(str, value))
                if not isinstance(value, str | int | float | bool)
                else value
            )
    return values


def log_final_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """One HPARAMS entry per run, with its final metrics, so TensorBoard compares runs."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # at the last step: logged at step 0, the final values would bend every curve back
            logger.log_hyperparams(_hparams(cfg), metrics=dict(metrics), step=trainer.global_step)
            logger.finalize("success")

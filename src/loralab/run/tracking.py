"""What a run reports to its loggers beyond the task's own metrics, and what it returns."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from loralab import compat
from loralab.lora import count_parameters

# the config keys that tell runs apart in TensorBoard's HPARAMS tab: single keys, and groups
# whose every setting is listed (adapter.scaling, adapter.init, adapter.quant..., the model's
# source and shape, the data's source and sizes)
HPARAM_KEYS = ("run_name", "seed", "trainer.max_epochs", "trainer.max_steps")
HPARAM_GROUPS = ("adapter", "model", "data")


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


def _hparam_value(value: Any) -> str | int | float | bool | None:
    """A value TensorBoard's HPARAMS tab can show: lists joined, None left out."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return ",".join(map(str, value))


def _flat(prefix: str, node: Any) -> dict[str, Any]:
    """`prefix.key.sub: value` for every leaf of a config group."""
    if not isinstance(node, dict):
        return {prefix: node}
    values: dict[str, Any] = {}
    for key, value in node.items():
        values.update(_flat(f"{prefix}.{key}", value))
    return values


def run_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings for the HPARAMS tab (leaves that are None are left out)."""
    values = {key: OmegaConf.select(cfg, key, default=None) for key in HPARAM_KEYS}
    for group in HPARAM_GROUPS:
        node = OmegaConf.select(cfg, group, default=None)
        if node is not None:
            values.update(_flat(group, OmegaConf.to_container(node, resolve=True)))
    shown = {key: _hparam_value(value) for key, value in values.items()}
    return {key: value for key, value in shown.items() if value is not None}


def log_final_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """One HPARAMS entry per run, naming its final metrics, so TensorBoard compares runs.

    Only the HPARAMS summaries are written: TensorBoard reads each metric's value from the
    scalar the run logged already, so no curve gets its last point twice (Lightning's
    `log_hyperparams(metrics=...)` would log every metric again at the last step).
    """
    from torch.utils.tensorboard.summary import hparams

    params = run_hparams(cfg)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.hparams.update(params)  # hparams.yaml beside the events
            # the writer Lightning's own log_hyperparams uses: fit and test closed it, and
            # this reopens it (SummaryWriter's add_hparams would open another run folder)
            writer = compat.tensorboard_file_writer(logger.experiment)
            for summary in hparams(params, dict(metrics)):
                writer.add_summary(summary, trainer.global_step)
            logger.finalize("success")

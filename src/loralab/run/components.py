"""Build Lightning callbacks and loggers from their config groups."""

from __future__ import annotations

from typing import Any

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig


def _instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Every entry of a `name: {_target_: ...}` group; entries set to null are switched off."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(node) for node in cfg.values() if node and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None, loggers: list[Logger]) -> list[Callback]:
    """The callbacks of the config; without loggers (logger=[]), the ones that need one drop out."""
    callbacks = _instantiate_group(cfg)
    if not loggers:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_group(cfg)

"""How an entry point turns exceptions into outcomes: one sentence for bad input, and in a
sweep a failed run is recorded and the sweep goes on."""

from __future__ import annotations

import logging
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from loralab.lora import AdapterConfigError
from loralab.models import BackboneCheckpointError
from loralab.summary import adapter_fields, write_summary

log = logging.getLogger("loralab")


class ConfigError(ValueError):
    """A config value that can't work; the message names the key and the fix."""


# Errors that mean "the input is wrong": the message says which key and how to fix it.
USER_ERRORS = (AdapterConfigError, BackboneCheckpointError, ConfigError, FileNotFoundError)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """Leave a summary.json with status=failed so sweeps and reports see what went wrong."""
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if not output_dir or getattr(rank_zero_only, "rank", 0) != 0:
        return  # in a DDP run the other ranks fail alike; rank 0 writes the one summary
    adapter = OmegaConf.to_container(cfg.adapter, resolve=True) if "adapter" in cfg else {}
    summary = {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
        "run_name": OmegaConf.select(cfg, "run_name", default=None),
        **adapter_fields(adapter),
    }
    write_summary(Path(output_dir), summary)


def run_guarded(job: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float | None:
    """Run one job; return the metric sweepers optimise (NaN for a failed run in a sweep)."""
    try:
        metrics = job(cfg)
    except Exception as error:  # noqa: BLE001 - every failure is recorded, then handled below
        record_failure(cfg, error)
        if in_multirun():
            log.error("run failed, the sweep goes on: %s: %s", type(error).__name__, error)
            return math.nan
        if isinstance(error, USER_ERRORS):
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        raise
    metric_name = cfg.get("optimized_metric")
    value = metrics.get(metric_name) if metric_name else None
    return float(value) if value is not None else None


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

"""The shape every entry point shares: Hydra composes the config, the job runs guarded.

`hydra_entry("train")(train)` is the whole `main` of `python -m loralab.train`: the config
resolvers are registered, configs/train.yaml is composed with the command line, and the job
runs under `run_guarded`, which turns exceptions into outcomes: bad input (a `UserError`,
also when Hydra's instantiate wraps it) is one `error:` sentence and exit code 1, a failed
run inside a sweep is recorded and the sweep goes on, and a bug keeps its traceback.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from loralab.errors import user_error_in
from loralab.io import to_plain
from loralab.run.resolvers import config_dir
from loralab.run.summary import RunSummary

log = logging.getLogger("loralab")

Job = Callable[[DictConfig], dict[str, float]]


def hydra_entry(config_name: str) -> Callable[[Job], Callable[..., float | None]]:
    """Decorator: `job` becomes the Hydra main of configs/<config_name>.yaml, guarded."""

    def decorate(job: Job) -> Callable[..., float | None]:
        @functools.wraps(job)  # Hydra names the job (hydra.job.name) after the wrapped function
        def guarded(cfg: DictConfig) -> float | None:
            return run_guarded(job, cfg)

        return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(
            guarded
        )

    return decorate


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """Leave a summary.json with status=failed so sweeps and reports see what went wrong."""
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if not output_dir or "adapter" not in cfg or getattr(rank_zero_only, "rank", 0) != 0:
        return  # not a training run; or a DDP rank > 0, which fails alike: rank 0 writes
    RunSummary.failed(
        adapter=to_plain(cfg.adapter),
        run_name=OmegaConf.select(cfg, "run_name", default=None),
        error=f"{type(error).__name__}: {error}",
        traceback="".join(traceback.format_exception(error)),
    ).write(Path(output_dir))


def run_guarded(job: Job, cfg: DictConfig) -> float | None:
    """Run one job; return the metric sweepers optimise (NaN for a failed run in a sweep)."""
    try:
        metrics = job(cfg)
    except Exception as error:  # noqa: BLE001 - every failure is recorded, then handled below
        record_failure(cfg, error)
        user_error = user_error_in(error)
        if in_multirun():
            shown = user_error or error
            log.error("run failed, the sweep goes on: %s: %s", type(shown).__name__, shown)
            return math.nan
        if user_error is not None:
            print(f"error: {user_error}", file=sys.stderr)
            raise SystemExit(1) from None
        raise
    metric_name = cfg.get("optimized_metric")
    value = metrics.get(metric_name) if metric_name else None
    return float(value) if value is not None else None

"""The shape every entry point shares: Hydra composes the config, the job runs guarded.

`hydra_entry("train")(train)` is the whole `main` of `python -m loralab.train`: the config
resolvers are registered, configs/train.yaml is composed with the command line, and the job
runs under `run_guarded`, which first checks that this machine can run the trainer config
(`checks.check_devices`) and then turns exceptions into outcomes: bad input (a `UserError`,
also when Hydra's instantiate wraps it) is one `error:` sentence and exit code 1, a failed
run inside a sweep is recorded (never over a completed summary.json) and the sweep goes on,
and a bug keeps its traceback. `FailedSweepExit` makes a sweep in which no run completed
exit with code 1, saying so.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from loralab.errors import UserError, user_error_in
from loralab.io import read_json, to_plain
from loralab.run.checks import check_devices
from loralab.run.resolvers import config_dir
from loralab.run.summary import COMPLETED, SUMMARY_FILE, RunSummary

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


def hydra_choice(group: str) -> str | None:
    """The option the command line chose for a config group (e.g. debug=limit), if known."""
    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get(group)
    return None if choice in (None, "null") else str(choice)


def exit_with(error: UserError) -> NoReturn:
    """The `error:` sentence and exit code 1, also from where Hydra would print a traceback."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(1) from None


def completed_summary_in(folder: str | Path, name: str = SUMMARY_FILE) -> bool:
    """Whether `folder` holds the summary.json of a completed run (a result to keep)."""
    path = Path(folder) / name
    try:
        return path.is_file() and read_json(path).get("status") == COMPLETED
    except (OSError, ValueError, AttributeError):
        return path.is_file()  # unreadable: not ours to replace


def record_failure(cfg: DictConfig, error: BaseException) -> None:
    """Leave a summary.json with status=failed so sweeps and reports see what went wrong.

    A completed run's summary.json is never replaced: a refused resume or a fresh run refused
    in a used folder leaves the results that are there.
    """
    output_dir = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if not output_dir or "adapter" not in cfg or getattr(rank_zero_only, "rank", 0) != 0:
        return  # not a training run; or a DDP rank > 0, which fails alike: rank 0 writes
    if completed_summary_in(output_dir):
        log.warning(
            "%s keeps the completed run's %s; this failure is not recorded there",
            output_dir,
            SUMMARY_FILE,
        )
        return
    shown = user_error_in(error) or error  # the user's error, not Hydra's wrapper around it
    RunSummary.failed(
        adapter=to_plain(cfg.adapter),
        run_name=OmegaConf.select(cfg, "run_name", default=None),
        seed=OmegaConf.select(cfg, "seed", default=None),
        error=f"{type(shown).__name__}: {shown}",
        traceback="".join(traceback.format_exception(error)),
    ).write(Path(output_dir))


def run_guarded(job: Job, cfg: DictConfig) -> float | None:
    """Run one job; return the metric sweepers optimise (NaN for a failed run in a sweep)."""
    try:
        if "trainer" in cfg:
            check_devices(cfg.trainer)
        metrics = job(cfg)
    except Exception as error:  # noqa: BLE001 - every failure is recorded, then handled below
        record_failure(cfg, error)
        user_error = user_error_in(error)
        if in_multirun():
            shown = user_error or error
            log.error("run failed, the sweep goes on: %s: %s", type(shown).__name__, shown)
            return math.nan
        if user_error is not None:
            exit_with(user_error)
        raise
    metric_name = cfg.get("optimized_metric")
    value = metrics.get(metric_name) if metric_name else None
    return float(value) if value is not None else None


class FailedSweepExit(Callback):
    """Hydra callback: a sweep in which no run completed exits with code 1, saying so.

    Failed runs are recorded and the sweep goes on (run_guarded returns NaN), so a sweep of
    runs that all failed, e.g. for want of a pretrained base, used to end with exit code 0.
    The runs of this sweep are the job folders Hydra wrote into since it started; a run
    completed if it wrote a completed summary.json since then. `summary_file: null` switches
    the check off for entry points that write no summary.
    """

    def __init__(self, summary_file: str | None = SUMMARY_FILE) -> None:
        self.summary_file = summary_file
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.summary_file:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        runs = sweep_runs(sweep_dir, self.started)
        completed = [run for run in runs if self._completed(run)]
        if runs and not completed:
            exit_with(
                UserError(
                    f"hydra.sweep.dir: every run of this sweep failed ({len(runs)} of "
                    f"{len(runs)} in {sweep_dir}; the first: {first_error(runs[0])}); fix "
                    "what it names and run the sweep again."
                )
            )

    def _completed(self, run: Path) -> bool:
        """A completed summary written by this sweep (not one an earlier sweep left there)."""
        name = str(self.summary_file)
        fresh = (run / name).is_file() and (run / name).stat().st_mtime >= self.started - 1
        return fresh and completed_summary_in(run, name)


def sweep_runs(sweep_dir: Path, since: float) -> list[Path]:
    """The job folders of a sweep that Hydra wrote into since `since`, in job order."""
    found = [
        overrides.parent.parent
        for overrides in sweep_dir.rglob(".hydra/overrides.yaml")
        if overrides.stat().st_mtime >= since - 1
    ]
    return sorted(found, key=job_order)


def job_order(folder: Path) -> tuple[bool, int, str]:
    """Numbered job folders (0, 1, ..., 10) by number, others after them by name."""
    numbered = folder.name.isdigit()
    return (not numbered, int(folder.name) if numbered else 0, str(folder))


def first_error(run: Path) -> str:
    """The error a failed run recorded, or what happened to a run that recorded none."""
    try:
        error = read_json(run / SUMMARY_FILE).get("error") or "no error recorded"
    except (OSError, ValueError, AttributeError):
        return f"{run.name} wrote no {SUMMARY_FILE} (killed?)"
    first_line = error.strip().splitlines()[0] if error.strip() else error
    message = first_line.split(": ", 1)[-1] if ": " in first_line else first_line
    return message.rstrip(".")

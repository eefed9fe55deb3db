"""Read a sweep folder: one `SweepRun` per run folder, with its summary and TensorBoard curves."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from loralab.errors import MissingFileError
from loralab.run.summary import SUMMARY_FILE, RunSummary

log = logging.getLogger(__name__)

Curve = list[tuple[int, float]]
# the override that repeats a point; runs that differ only in it are one point of the sweep
SEED_KEY = "seed"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"


@dataclass
class SweepRun:
    """One run folder of a sweep: what its summary.json and event files say."""

    dir: Path
    summary: RunSummary
    curves: dict[str, Curve] = field(default_factory=dict)
    # the job's command-line overrides (Hydra's .hydra/overrides.yaml) in order, as
    # (key, value); a key may repeat (a point's own learning rate, then its grid's)
    override_list: list[tuple[str, str]] = field(default_factory=list)

    @property
    def overrides(self) -> dict[str, str]:
        """key -> value of the job's overrides; of a repeated key, the last (Hydra's) wins."""
        return dict(self.override_list)

    @property
    def job(self) -> str:
        return self.dir.name

    @property
    def name(self) -> str:
        return str(self.summary.run_name or f"run {self.job}")

    @property
    def status(self) -> str:
        return self.summary.status

    @property
    def completed(self) -> bool:
        return self.summary.completed

    @property
    def untrained(self) -> bool:
        """An evaluation-only run (e.g. the pretrained base before fine-tuning): 0 steps."""
        return self.summary.global_step == 0

    @property
    def is_full(self) -> bool:
        """Full fine-tuning: every weight trained."""
        return self.summary.adapter == "full" and not self.untrained

    @property
    def is_adapter(self) -> bool:
        """LoRA or a variant of it: an adapter trained beside a frozen base."""
        return self.summary.adapter not in (None, "full") and not self.untrained

    @property
    def seed(self) -> int | str | None:
        """The run's seed: from its summary, else from its overrides (a run that failed early)."""
        if self.summary.seed is not None:
            return self.summary.seed
        value = self.overrides.get(SEED_KEY)
        return int(value) if value is not None and value.lstrip("-").isdigit() else value

    def metric(self, key: str) -> float | None:
        value = self.summary.metrics.get(key)
        return float(value) if isinstance(value, int | float) else None


def is_run_dir(path: Path) -> bool:
    """A folder Hydra made for one job: it has a summary.json or Hydra's .hydra/ record."""
    return path.is_dir() and ((path / SUMMARY_FILE).is_file() or (path / ".hydra").is_dir())


def _job_order(path: Path) -> tuple[int, int | str]:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def read_run(run_dir: Path) -> SweepRun:
    """A run folder; a folder without a readable summary.json counts as a failed run."""
    try:
        summary = RunSummary.read(run_dir)
    except FileNotFoundError:
        summary = RunSummary(error="no summary.json: the run was killed or is running")
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        summary = RunSummary(error=f"unreadable {SUMMARY_FILE} ({error})")
    overrides = read_overrides(run_dir)
    summary.run_name = summary.run_name or _run_name_from_overrides(dict(overrides))
    return SweepRun(
        dir=run_dir, summary=summary, curves=read_curves(run_dir), override_list=overrides
    )


def read_overrides(run_dir: Path) -> list[tuple[str, str]]:
    """Hydra's record of a job's command-line overrides, as (key, value) in their order."""
    path = run_dir / OVERRIDES_FILE
    if not path.is_file():
        return []
    try:
        lines = OmegaConf.load(path)
    except Exception as error:  # noqa: BLE001 - an unreadable record costs the grouping only
        log.warning("cannot read %s: %s", path, error)
        return []
    overrides = []
    for line in lines if isinstance(lines, ListConfig) else []:
        key, _, value = str(line).partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith("hydra."):
            overrides.append((key, value))
    return overrides


def _run_name_from_overrides(overrides: dict[str, str]) -> str | None:
    """Hydra's record of the job's overrides names a run that left no summary."""
    return " ".join(f"{k}={v}" for k, v in overrides.items())[:60] or None


def collect_runs(sweep_dir: str | Path) -> list[SweepRun]:
    """Every run folder of a sweep, in job order."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise MissingFileError(f"SWEEP_DIR: {sweep_dir} is not a folder; pass a sweep folder.")
    run_dirs = sorted((p for p in sweep_dir.iterdir() if is_run_dir(p)), key=_job_order)
    return [read_run(p) for p in run_dirs]


def read_curves(run_dir: Path) -> dict[str, Curve]:
    """Scalar series from the run's TensorBoard event files: tag -> [(step, value)] by step.

    If a step was logged twice (e.g. final metrics logged again with the hyper-parameters),
    the last value wins, so every curve is a function of the step.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, dict[int, float]] = {}
    event_dirs = sorted({p.parent for p in run_dir.glob("tensorboard/**/events.out.tfevents.*")})
    for event_dir in event_dirs:
        accumulator = EventAccumulator(str(event_dir), size_guidance={"scalars": 0})
        try:
            accumulator.Reload()
        except Exception as error:  # noqa: BLE001 - a corrupt event file costs its curves only
            log.warning("cannot read the event files in %s: %s", event_dir, error)
            continue
        for tag in accumulator.Tags().get("scalars", []):
            series = curves.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                series[int(event.step)] = float(event.value)
    return {tag: sorted(series.items()) for tag, series in curves.items()}


def find_sweeps(log_dir: str | Path) -> list[Path]:
    """Sweep folders under a log folder (logs/<task>/multiruns/<time>/), oldest first."""
    log_dir = Path(log_dir)
    sweeps = [
        p
        for p in log_dir.glob("*/multiruns/*")
        if p.is_dir() and any(is_run_dir(child) for child in p.iterdir())
    ]
    # folder names are timestamps (%Y-%m-%d_%H-%M-%S...), so they sort in time order
    return sorted(sweeps, key=lambda p: (p.name, p.stat().st_mtime))


def newest_sweep(log_dir: str | Path) -> Path:
    sweeps = find_sweeps(log_dir)
    if not sweeps:
        raise MissingFileError(
            f"no sweep folder under {log_dir}/<task>/multiruns/; run `make sweep` first, "
            "or pass SWEEP_DIR."
        )
    return sweeps[-1]

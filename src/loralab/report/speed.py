"""The report's speed and memory figures: the interleaved probe of the sweep's points.

Each point is probed once, rebuilt from the config of its first completed run; the result
is kept in SWEEP_DIR/probe.json, so the report of the same sweep reuses it (`--probe` runs it
again, `--no-probe` leaves the probe out and the report shows the per-run figures alone).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loralab.io import read_json, write_json
from loralab.report.collect import SweepRun
from loralab.report.points import Point
from loralab.report.probe import (
    ROUNDS,
    STEPS_PER_ROUND,
    Schedule,
    StepProbe,
    error_sentence,
    probe,
    run_config,
)

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"
# when to run the probe: reuse a probe.json of the same points, always run, never run
PROBE_MODES = ("auto", "always", "never")


@dataclass
class SpeedProbe:
    """The probe of a sweep: point label -> its step, and the points it could not rebuild."""

    results: dict[str, StepProbe] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # point label -> the run folder whose config the probe rebuilt
    runs: dict[str, str] = field(default_factory=dict)
    schedule: Schedule = field(default_factory=Schedule)  # the rounds the probe timed

    def get(self, point: Point) -> StepProbe | None:
        return self.results.get(point.label)

    def to_dict(self) -> dict:
        return {
            "rounds": self.schedule.rounds,
            "steps_per_round": self.schedule.steps_per_round,
            "runs": self.runs,
            "results": {k: v.to_dict() for k, v in self.results.items()},
            "errors": self.errors,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SpeedProbe:
        return cls(
            results={k: StepProbe.from_dict(v) for k, v in data.get("results", {}).items()},
            errors=dict(data.get("errors", {})),
            runs=dict(data.get("runs", {})),
            schedule=Schedule(
                int(data.get("rounds", ROUNDS)),
                int(data.get("steps_per_round", STEPS_PER_ROUND)),
            ),
        )


def probed_runs(points: Sequence[Point]) -> dict[str, str]:
    """Point label -> the run folder that stands for it: its first completed, trained run."""
    return {p.label: str(p.first.dir) for p in points if p.completed and not p.untrained}


def read_probe(sweep_dir: Path) -> SpeedProbe | None:
    path = sweep_dir / PROBE_FILE
    if not path.is_file():
        return None
    try:
        return SpeedProbe.from_dict(read_json(path))
    except (ValueError, KeyError, TypeError) as error:
        log.warning("ignoring the unreadable %s: %s", path, error)
        return None


def speed_probe(points: Sequence[Point], sweep_dir: Path, mode: str = "auto") -> SpeedProbe | None:
    """The sweep's probe: reused from probe.json (auto, same points), run now, or None."""
    if mode not in PROBE_MODES:
        raise ValueError(f"probe mode {mode!r} is unknown; use one of {list(PROBE_MODES)}")
    runs = probed_runs(points)
    if mode == "never" or not runs:
        return None
    saved = read_probe(sweep_dir)
    if mode == "auto" and saved is not None and saved.runs == runs:
        log.info("speed and memory: the probe in %s", sweep_dir / PROBE_FILE)
        return saved
    configs, errors = {}, {}
    for label, run_dir in runs.items():
        try:
            configs[label] = run_config(run_dir)
        except Exception as error:  # noqa: BLE001 - a point that cannot be rebuilt is reported
            errors[label] = error_sentence(error)
    log.info("probing the training step of %d points, interleaved", len(configs))
    probed = probe(configs)
    result = SpeedProbe(probed.results, {**errors, **probed.errors}, runs, probed.schedule)
    write_json(sweep_dir / PROBE_FILE, result.to_dict())
    return result


# the LoRA point the cost sentences describe: the one whose rank is nearest this
TYPICAL_RANK = 8


def typical_lora(points: Sequence[Point]) -> Point | None:
    ranked = [p for p in points if p.is_adapter and isinstance(p.first.summary.rank, int)]
    return min(ranked, key=lambda p: abs(p.first.summary.rank - TYPICAL_RANK), default=None)


def step_time(run: SweepRun) -> float | None:
    """A run's own mean step time, timed while it trained."""
    return run.summary.step_time_ms


def ranking_inversion(
    points: Sequence[Point], speed: SpeedProbe | None
) -> tuple[Point, Point] | None:
    """Two points the per-run step times order one way and the probe the other, if any."""
    if speed is None:
        return None
    timed = []
    for point in points:
        probed, per_run = speed.get(point), point.estimate(step_time)
        if probed and per_run:
            timed.append((point, per_run.mean, probed.step_ms))
    for a, run_a, probe_a in timed:
        for b, run_b, probe_b in timed:
            # clear both ways: 10% apart per run, and 10% apart the other way in the probe
            if run_a > 1.1 * run_b and probe_b > 1.1 * probe_a:
                return a, b
    return None

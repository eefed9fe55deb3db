"""Everything the report says about a sweep, computed once: its points (runs that differ only
in their seed, each at the learning rate chosen on validation), the quality metric, each point
against full fine-tuning paired by seed (at the chosen rates, and at the hand-picked ones),
the interleaved speed probe, learning against forgetting, and the rank analysis."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loralab.report.collect import SweepRun
from loralab.report.compare import Comparison, compare, reference_point
from loralab.report.forgetting import Forgetting, analyse_forgetting
from loralab.report.points import Point
from loralab.report.quality import Quality, choose_quality
from loralab.report.ranks import RankAnalysis, analyse_runs
from loralab.report.rates import RateSearch, select_rates
from loralab.report.speed import SpeedProbe, speed_probe


@dataclass
class Sweep:
    dir: Path
    runs: list[SweepRun]
    points: list[Point]
    quality: Quality
    reference: Point | None  # full fine-tuning
    # test quality against full fine-tuning, in points (accuracy) or the metric's units
    comparisons: list[Comparison] = field(default_factory=list)
    # each point's learning-rate grid and the rate chosen on validation (points with a grid)
    searches: list[RateSearch] = field(default_factory=list)
    # the same comparisons with every point at its hand-picked rate (when every grid holds it)
    hand_picked_comparisons: list[Comparison] = field(default_factory=list)
    speed: SpeedProbe | None = None
    forgetting: Forgetting | None = None
    ranks: RankAnalysis = field(default_factory=RankAnalysis)

    @property
    def seeds(self) -> list:
        """The distinct seeds of the sweep's runs, in the order they appear."""
        return list(dict.fromkeys(r.seed for r in self.runs if r.seed is not None))

    @property
    def max_seeds(self) -> int:
        return max((len(p.completed) for p in self.points), default=0)


def analyse_sweep(sweep_dir: Path, runs: list[SweepRun], probe: str = "auto") -> Sweep:
    """Group, compare, probe and analyse the runs of one sweep folder."""
    quality = choose_quality(runs)
    selection = select_rates(runs, quality)
    points = selection.points
    reference = reference_point(points)
    return Sweep(
        dir=sweep_dir,
        runs=runs,
        points=points,
        quality=quality,
        reference=reference,
        comparisons=compare_on_test(points, quality),
        searches=selection.searches,
        hand_picked_comparisons=compare_on_test(selection.hand_picked or [], quality),
        speed=speed_probe(points, sweep_dir, probe),
        forgetting=analyse_forgetting(points, quality),
        # one run per point: the spectra of three seeds of one point tell the same story
        ranks=analyse_runs([p.first for p in points]),
    )


def compare_on_test(points: list[Point], quality: Quality) -> list[Comparison]:
    """Every point's test quality against full fine-tuning's, paired by seed (none without it)."""
    reference = reference_point(points)
    if reference is None:
        return []
    scale = 100 if quality.percent else 1
    return compare(points, reference, quality.test_value, scale, quality.higher_is_better)

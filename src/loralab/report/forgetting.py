"""Learning against forgetting: what each run gained on its target and lost on its source.

A fine-tuning run measures, before its first step and with its test (the `SourceEvaluation`
callback), the target's test split (`test/<m>_start`, `test/<m>`) and the base's own source
task (`source/<m>_start`, `source/<m>`). Learning is the gain on the target, forgetting the
loss on the source, both in the units of the metric: accuracy points, or perplexity.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from loralab.keys import SOURCE_PREFIX, START
from loralab.report.collect import SweepRun
from loralab.report.compare import Comparison, compare, reference_point
from loralab.report.points import Point, Value
from loralab.report.quality import Quality


@dataclass(frozen=True)
class SourceMetric:
    """The source metric the runs logged: `source/acc` (higher is better) or `source/ppl`."""

    key: str
    name: str
    higher_is_better: bool
    percent: bool

    def change(self, run: SweepRun) -> float | None:
        """How much the run lost on its source: accuracy points lost, or perplexity gained."""
        start, after = run.metric(self.key + START), run.metric(self.key)
        if start is None or after is None:
            return None
        lost = start - after if self.higher_is_better else after - start
        return 100 * lost if self.percent else lost

    @property
    def unit(self) -> str:
        return "points" if self.percent else self.name


SOURCE_METRICS = (
    SourceMetric(f"{SOURCE_PREFIX}acc", "accuracy", higher_is_better=True, percent=True),
    SourceMetric(f"{SOURCE_PREFIX}ppl", "perplexity", higher_is_better=False, percent=False),
)


def source_metric(runs: Sequence[SweepRun]) -> SourceMetric | None:
    """The source metric any completed run measured, or None (no run evaluated a source)."""
    for metric in SOURCE_METRICS:
        if any(r.completed and metric.change(r) is not None for r in runs):
            return metric
    return None


def learning(quality: Quality, points: Sequence[Point]) -> Value:
    """run -> its gain on the target's test split since before its first step.

    A run that did not test before its first step (an LLM's exact match would cost hundreds
    of generations) starts where the sweep's untrained base point stands: the same model on
    the same test split (its run of the same seed, else the mean of its runs).
    """
    base = {
        run.seed: value
        for point in points
        if point.untrained
        for run in point.completed
        if (value := quality.test_value(run)) is not None
    }
    base_mean = statistics.fmean(base.values()) if base else None

    def gain(run: SweepRun) -> float | None:
        start, after = run.metric(quality.test + START), quality.test_value(run)
        if start is None and not run.untrained:
            start = base.get(run.seed, base_mean)
        if start is None or after is None:
            return None
        return -quality.gap(after, start)

    return gain


@dataclass
class Forgetting:
    """The sweep's learning and forgetting, per point, and each point against full FT."""

    metric: SourceMetric
    source: str | None  # what the source is, in words (the run summaries' `source`)
    points: list[Point]
    gain: Value  # run -> its gain on the target (`learning`)
    # each point's forgetting minus full fine-tuning's, paired by seed (- = forgot less)
    comparisons: list[Comparison]


def analyse_forgetting(points: Sequence[Point], quality: Quality) -> Forgetting | None:
    """Forgetting per point and against full fine-tuning; None if no run measured a source."""
    runs = [r for p in points for r in p.runs]
    metric = source_metric(runs)
    if metric is None:
        return None
    measured = [p for p in points if p.values(metric.change)]
    source = next((r.summary.source for r in runs if r.summary.source), None)
    reference = reference_point(measured)
    # forgetting is a loss: the point that forgot less is the better one
    comparisons = (
        compare(measured, reference, metric.change, higher_is_better=False) if reference else []
    )
    return Forgetting(metric, source, measured, learning(quality, points), comparisons)

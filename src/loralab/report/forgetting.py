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
from loralab.report.compare import Comparison, by_verdict, compare, reference_point
from loralab.report.numbers import (
    fmt_change,
    fmt_comparisons,
    fmt_difference,
    fmt_names,
    over_seeds,
)
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

    def format(self, value: float | None) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3g}"

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


def forgetting_sentences(forgetting: Forgetting | None) -> list[str]:
    """How much full fine-tuning and LoRA lost on the source, and which forgot less."""
    if forgetting is None:
        return []
    metric = forgetting.metric
    source = forgetting.source or metric.key
    full = next((c.reference for c in forgetting.comparisons), None)
    sentences = []
    if full:
        est = full.estimate(metric.change)
        sentences.append(
            f"On the source task ({source}), full fine-tuning loses "
            f"{fmt_change(est, metric.percent)} {metric.unit} ({over_seeds(est.n)})."
        )
    verbs = {"better": "less", "worse": "more"}
    for word, group in by_verdict(forgetting.comparisons, tuple(verbs)):
        verb = verbs[word]
        if len(group) == 1:
            difference = fmt_difference(group[0].difference, metric.percent, metric.unit)
            sentences.append(
                f"{group[0].point.label} forgets {verb} than full fine-tuning: its loss minus "
                f"full fine-tuning's is {difference}, paired by seed."
            )
        else:
            sentences.append(
                f"{fmt_names([c.point.label for c in group])} forget {verb} than full "
                f"fine-tuning, paired by seed (loss minus full fine-tuning's, in {metric.unit}: "
                f"{fmt_comparisons(group, metric.percent)})."
            )
    noise = [c for c in forgetting.comparisons if c.verdict == "within noise"]
    if noise:
        sentences.append(
            f"{fmt_names([c.point.label for c in noise])} "
            f"{'forgets' if len(noise) == 1 else 'forget'} as much as full fine-tuning within "
            "noise (each paired 95% CI holds 0)."
        )
    if any(c.verdict is None for c in forgetting.comparisons):
        sentences.append("With one seed the forgetting has no interval; more seeds would tell.")
    measured = [p for p in forgetting.points if p.estimate(metric.change)]
    if len(measured) > 1:
        least = min(measured, key=lambda p: p.estimate(metric.change).mean)
        sentences.append(
            f"{least.label} forgets least: "
            f"{fmt_change(least.estimate(metric.change), metric.percent)} {metric.unit}."
        )
    return sentences

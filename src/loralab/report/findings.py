"""The report's "findings": a short paragraph written from the sweep's numbers.

Whether a LoRA point is better than, worse than or level with full fine-tuning is read from
the 95% interval of their difference paired by seed, never from the gap of one seed: an
interval that holds 0 is "within noise". With one seed per point there is no such interval;
the findings then give the test accuracy's binomial (Wilson) interval and say that more
seeds would tell.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from loralab.report.compare import Comparison, by_verdict
from loralab.report.forgetting import forgetting_sentences
from loralab.report.numbers import (
    decimals_for,
    fmt_comparisons,
    fmt_difference,
    fmt_estimate,
    fmt_names,
    fmt_signed,
    fmt_value,
    over_seeds,
)
from loralab.report.points import Point
from loralab.report.quality import Quality
from loralab.report.ranks import RankAnalysis
from loralab.report.rates import RateSearch
from loralab.report.speed import cost_sentences
from loralab.report.stats import wilson_interval
from loralab.report.sweep import Sweep

SEEDS_HINT = "`seed=1,2,3` on the command line, or `hydra.sweeper.seeds=[1,2,3]`"


def _pct(point: Point) -> str:
    value = point.first.summary.trainable_percent
    return f"{value:.2g}%" if isinstance(value, int | float) else "an unknown share"


def quality_sentences(sweep: Sweep) -> list[str]:
    """Full fine-tuning, untrained references, the best LoRA point, and the verdicts."""
    q = sweep.quality
    scored = [p for p in sweep.points if p.estimate(q.test_value)]
    sentences = []
    full = sweep.reference if sweep.reference in scored else None
    if full:
        est = full.estimate(q.test_value)
        sentences.append(
            f"Full fine-tuning reaches {fmt_estimate(est, q.percent)} test {q.name} "
            f"({over_seeds(est.n)}), training all {full.first.summary.trainable_params:,} parameters."
        )
    for point in (p for p in scored if p.untrained):
        est = point.estimate(q.test_value)
        sentences.append(
            f"Without fine-tuning, {point.label} scores {fmt_estimate(est, q.percent)}."
        )
    lora = [p for p in scored if p.is_adapter]
    if lora:
        sign = 1 if q.higher_is_better else -1
        best = max(lora, key=lambda p: sign * p.estimate(q.test_value).mean)
        sentences.append(
            f"The LoRA point with the best mean, {best.label}, reaches "
            f"{fmt_estimate(best.estimate(q.test_value), q.percent)} training {_pct(best)} of "
            "the parameters."
        )
    if full and lora:
        sentences += verdict_sentences(sweep.comparisons, q)
        sentences += single_seed_sentences(sweep, q)
    return sentences


def verdict_sentences(comparisons: Sequence[Comparison], quality: Quality) -> list[str]:
    """Better / worse / within noise, from each paired difference's 95% interval."""
    unit = "points" if quality.percent else quality.name
    judged = [c for c in comparisons if c.verdict and c.point.is_adapter]
    sentences = []
    for word, group in by_verdict(judged, ("better", "worse")):
        if len(group) == 1:
            sentences.append(
                f"{group[0].point.label} is {word} than full fine-tuning: "
                f"{fmt_difference(group[0].difference, quality.percent, unit)} test "
                f"{quality.name}, paired by seed."
            )
        else:
            sentences.append(
                f"{fmt_names([c.point.label for c in group])} are {word} than full "
                f"fine-tuning, paired by seed (test {quality.name} difference in {unit}: "
                f"{fmt_comparisons(group, quality.percent)})."
            )
    noise = [c for c in judged if c.verdict == "within noise"]
    if noise:
        means = [c.difference.mean for c in noise]
        d = decimals_for(max(c.difference.half_width for c in noise))
        lo, hi = (
            fmt_signed(min(means), quality.percent, d),
            fmt_signed(max(means), quality.percent, d),
        )
        spread = f"{lo} {unit}" if len(means) == 1 else f"{lo} to {hi} {unit}"
        sentences.append(
            f"{fmt_names([c.point.label for c in noise])} "
            f"{'is' if len(noise) == 1 else 'are'} within noise of full fine-tuning: the 95% "
            f"CI of each difference, paired by seed, holds 0 (mean difference {spread})."
        )
    decided = [c for c in judged if c.verdict != "within noise"]
    if decided and len(judged) >= 3:
        sentences.append(
            f"{len(judged)} points are compared with full fine-tuning, each at 95%: about "
            f"{0.05 * len(judged):.1g} of their intervals would exclude 0 by chance alone, so "
            "a lone verdict near the edge of its interval is weak evidence; more seeds would "
            "settle it."
        )
    not_worse = [c for c in judged if c.verdict in ("within noise", "better")]
    if not_worse:
        cheapest = min(not_worse, key=lambda c: c.point.first.summary.trainable_params or 0)
        sentences.append(
            f"The cheapest LoRA point not shown worse than full fine-tuning is "
            f"{cheapest.point.label}, training {_pct(cheapest.point)} of the parameters."
        )
    return sentences


def single_seed_sentences(sweep: Sweep, quality: Quality) -> list[str]:
    """Points without two seeds to pair: the test set's own noise, and a call for seeds."""
    unjudged = [c for c in sweep.comparisons if c.verdict is None and c.point.is_adapter]
    if not unjudged:
        return []
    sentences = [
        f"{fmt_names([c.point.label for c in unjudged])} {'has' if len(unjudged) == 1 else 'have'} fewer than two seeds "
        "paired with full fine-tuning, so nothing measures how much the gap would move with "
        "another seed, and the gap is no finding yet."
    ]
    if quality.percent:
        shown = [sweep.reference, *(c.point for c in unjudged)]
        intervals = [wilson_text(p, quality) for p in shown]
        intervals = [t for t in intervals if t]
        if intervals:
            sentences.append(
                "The test set alone moves an accuracy this much (95% Wilson interval of one "
                f"run's test accuracy): {'; '.join(intervals)}."
            )
    sentences.append(f"More seeds would tell ({SEEDS_HINT}).")
    return sentences


def wilson_text(point: Point, quality: Quality) -> str | None:
    """'full: 92.9% on 1,000 examples, 91.2-94.3%' for a point's first run."""
    run = point.first
    accuracy, n = quality.test_value(run), run.summary.test_size
    if accuracy is None or not n:
        return None
    low, high = wilson_interval(accuracy, n)
    return (
        f"{point.label}: {fmt_value(accuracy, True)} on {n:,} examples, "
        f"{100 * low:.1f}-{100 * high:.1f}%"
    )


def rank_sentences(analysis: RankAnalysis) -> list[str]:
    sentences = []
    for label, kind in analysis.kinds.items():
        if kind != "full":
            continue
        ranks = list(analysis.ranks[label].values())
        size = max(r.full_rank for r in ranks)
        r90, r99 = [r.rank90 for r in ranks], [r.rank99 for r in ranks]
        median99 = statistics.median(r99)
        verdict = "is low-rank" if median99 <= size / 4 else "is not clearly low-rank"
        sentences.append(
            f"The full fine-tuning update {verdict}: across its {len(ranks)} attention "
            f"projections (matrix rank up to {size}), 90% of the energy of delta W lies in the "
            f"top {min(r90)}-{max(r90)} directions (median {statistics.median(r90):g}) and 99% "
            f"in the top {min(r99)}-{max(r99)} (median {median99:g} of {size})."
        )
        break
    comparison = analysis.subspace
    if comparison is not None:
        grids = list(comparison.grids.values())
        top = statistics.mean(float(g[0, 0]) for g in grids)
        inside = statistics.mean(float(g[-1, -1]) for g in grids)
        d = statistics.mean(comparison.input_dim.values())
        small, large = comparison.small_rank, comparison.large_rank
        sentences.append(
            f"The top directions of the r={small} and r={large} adapters overlap with "
            f"phi(1, 1) = {top:.2f} on average (random directions: {1 / d:.2f}), and the "
            f"r={small} subspace against the r={large} one gives phi({small}, {large}) = "
            f"{inside:.2f} (random: {grids[0].shape[1] / d:.2f})."
        )
    return sentences


def _rate_span(search: RateSearch) -> str:
    rates = search.rates
    return f"{rates[0]:g} to {rates[-1]:g}, {len(rates)} rates"


def rate_sentences(sweep: Sweep) -> list[str]:
    """Which rate each point got and how, LoRA's best rate against full's, edges, verdicts."""
    chosen = [s for s in sweep.searches if s.chosen is not None]
    if not sweep.searches:
        return []
    q = sweep.quality
    sentences = []
    if chosen:
        picks = "; ".join(f"{s.label} {s.chosen.lr:g} (of {_rate_span(s)})" for s in chosen)
        sentences.append(
            f"Each point's learning rate was chosen by its mean best validation {q.name} over "
            f"seeds, never by test, and every test figure is at that rate: {picks}."
        )
    for search in sweep.searches:
        if search.chosen is None:
            sentences.append(
                f"{search.label} has no validation {q.name} at any rate, so no rate was chosen "
                "and each rate is shown as a point of its own."
            )
    full = next((s for s in chosen if s.point.is_full), None)
    lora = [s for s in chosen if s.point.is_adapter]
    if full and lora:
        ratios = ", ".join(f"{s.label} {s.chosen.lr / full.chosen.lr:.2g}x" for s in lora)
        sentences.append(f"The best LoRA rates over full fine-tuning's best: {ratios}.")
    for search in chosen:
        if search.at_edge:
            sentences.append(
                f"{search.label}'s best rate is the {search.at_edge} of its grid: widen the grid."
            )
    sentences += hand_picked_sentences(sweep)
    return sentences


def hand_picked_sentences(sweep: Sweep) -> list[str]:
    """Whether tuning the rates changed any verdict against full fine-tuning."""
    before = {c.point.label: c for c in sweep.hand_picked_comparisons if c.point.is_adapter}
    after = [c for c in sweep.comparisons if c.point.label in before]
    if not after:
        return []
    q = sweep.quality
    unit = "points" if q.percent else q.name
    changed = [
        f"{c.point.label} {before[c.point.label].verdict or 'unjudged'} "
        f"({fmt_mean(before[c.point.label].difference, q.percent)}), then "
        f"{c.verdict or 'unjudged'} ({fmt_mean(c.difference, q.percent)})"
        for c in after
        if before[c.point.label].verdict != c.verdict or c.verdict is None
    ]
    if not changed:
        return [
            "At the rates the experiment names itself (hand-picked) every verdict against full "
            "fine-tuning is the same as at the chosen rates."
        ]
    return [
        f"Against full fine-tuning (test {q.name} difference in {unit}), with both at their "
        "hand-picked rates, then both at their chosen ones: " + "; ".join(changed) + "."
    ]


def fmt_mean(difference, percent: bool) -> str:
    return fmt_signed(difference.mean, percent) if difference is not None else "no pair"


def failure_sentence(sweep: Sweep) -> str | None:
    failed = [r.name for r in sweep.runs if not r.completed]
    if not failed:
        return None
    return f"{len(failed)} run(s) failed ({', '.join(failed)}); see the failed runs below."


def findings(sweep: Sweep) -> str:
    """One paragraph: quality against full FT, cost, forgetting, rank analysis, failures."""
    parts = [
        *rate_sentences(sweep),
        *quality_sentences(sweep),
        *cost_sentences(sweep.points, sweep.reference, sweep.speed),
        *forgetting_sentences(sweep.forgetting),
        *rank_sentences(sweep.ranks),
        failure_sentence(sweep),
    ]
    return " ".join(p for p in parts if p) or "No run of this sweep completed."

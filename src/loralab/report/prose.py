"""Every sentence of the report: the findings paragraph, the notes under its tables, the
overview and the short texts that stand in for what a sweep lacks.

The findings are written from the sweep's analysis (`sweep.Sweep`), never from the gap of one
seed: whether a LoRA point is better than, worse than or level with full fine-tuning is read
from the 95% interval of their difference paired by seed, and an interval that holds 0 is
"within noise". With one seed per point there is no such interval; the findings then give
the test accuracy's binomial (Wilson) interval and say that more seeds would tell. Numbers
are written by `format.py`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from loralab.report.compare import Comparison, by_verdict
from loralab.report.forgetting import Forgetting
from loralab.report.format import (
    decimals_for,
    fmt_change,
    fmt_comparisons,
    fmt_difference,
    fmt_estimate,
    fmt_signed,
    fmt_value,
)
from loralab.report.points import Point
from loralab.report.probe import Schedule
from loralab.report.quality import Quality
from loralab.report.ranks import RankAnalysis
from loralab.report.rates import RateSearch
from loralab.report.speed import SpeedProbe, ranking_inversion, step_time, typical_lora
from loralab.report.stats import wilson_interval
from loralab.report.sweep import Sweep

COUNTING_NOTE = (
    "Trainable parameters count every weight that trains: the adapter's matrices plus any "
    "module trained in full beside them (`adapter.trainable`, e.g. a new classifier head, "
    "which full fine-tuning trains too); % of total is of all the adapted model's "
    "parameters, the adapter's included."
)
POINTS_NOTE = (
    "A point is the set of runs that differ only in their seed. Each cell is the mean over "
    "the point's seeds ± the half-width of the 95% confidence interval of that mean "
    "(Student t with n - 1 degrees of freedom: with 3 seeds, 4.30 s / sqrt(3), s the standard "
    "deviation of the runs); *seeds* is n, and one seed has no interval."
)
DIFFERENCE_NOTE = (
    "For each point and each seed, the point's test {what} minus full fine-tuning's with the "
    "same seed (same data, same test set), then the mean of those differences and its 95% "
    "confidence interval. An interval that holds 0 is *within noise*: these seeds cannot tell "
    "the two apart. Only an interval wholly above or below 0 makes a point better or worse."
)
SPEED_NOTE = (
    "The *probe* columns come from a short interleaved probe run after the sweep "
    "(`loralab.report.probe`): each point's run is rebuilt from its stored config and its "
    "training step (forward, backward, optimizer step on one batch) is timed in turns with "
    "every other point's, {rounds} rounds of {steps} steps (as many as fit the probe's time "
    "budget), in one process, so machine load hits every point alike. *Step* is the fastest "
    "of its timed steps: other processes can make a step slower, never faster, so the "
    "fastest is the step's own cost (the median is beside it; on a quiet machine they "
    "agree). Step memory is counted exactly from the tensors alive at the step's peak. The "
    "*per run* columns are each run's own figures, measured while it trained (mean ± 95% CI "
    "over seeds; peak RSS is the resident memory of the run's process): they include whatever "
    "else the machine was doing, a parallel sweep's other runs too, so a speed ranking should "
    "be read from the probe."
)
FORGETTING_NOTE = (
    "Every run measured, before its first step and again with its test, the target's test "
    "split and the base's source task ({source}). *Gain on target* is the test {quality} "
    "after minus before (a run that did not test before its first step starts where the "
    "untrained base point stands); *forgetting* is the source {metric} lost ({direction}). "
    "*Forgetting - full* is paired by seed: negative = the point forgot less than full "
    "fine-tuning. A classifier's source is scored with the base's own head put back on the "
    "fine-tuned features (its new head answers another question); a language model keeps "
    "its head."
)
RATES_NOTE = (
    "Every point ran once per learning rate of its grid (`hydra.sweeper.lrs` or "
    "`lr_factors`), each rate over the same seeds, data and steps. A point's rate is the one "
    "with the best mean *validation* {quality} over its seeds (the best validation of each "
    "run, the checkpoint its test reads); test never chooses. Everything else in this report "
    "(points, paired verdicts, speed, forgetting, ranks) is at the chosen rates; *hand-picked* "
    "is the rate the experiment names for the point itself. A rate at the end of its grid may "
    "not be the best: widen the grid there."
)
RANK_NOTE = (
    "How low-rank is the change fine-tuning makes? For each attention projection, delta W "
    "is W_finetuned - W_pretrained for full fine-tuning and scaling * B @ A for LoRA (for PiSSA "
    "and DoRA adapters: the merged weight - W_pretrained). The "
    "table gives the smallest rank k whose top-k singular values hold 90% / 99% of "
    "||delta W||_F^2 (the update's energy) per module kind, as the median and range over "
    "its layers; `full rank` is the matrix's own rank limit. Every module's ranks are in "
    "`ranks.csv` beside this report. One run per point (its first seed) is analysed."
)
SUBSPACE_NOTE = (
    "Do adapters of different ranks learn the same directions? As in the LoRA paper "
    "(section 7.2): phi(i, j) = ||U_i^T V_j||_F^2 / min(i, j) between the top-i input "
    "directions (right singular vectors) of one update and the top-j of the other; "
    "1 = one subspace contains the other, 0 = orthogonal."
)
# after the subspace table: what its cells hold
SUBSPACE_CELLS_NOTE = (
    "Each cell: the median over the kind's layers (their range in brackets), then the "
    "expected value for random subspaces."
)
NO_RANKS_NOTE = "_No run left weights to analyse._"
NO_PROBE_NOTE = (
    "_No probe: the figures below are each run's own, measured while it trained "
    "(`python -m loralab.report SWEEP_DIR` runs the probe unless `--no-probe`)._"
)


def over_seeds(n: int) -> str:
    """What a mean ± interval is over: 'mean ± 95% CI over 3 seeds', or 'one seed'."""
    return f"mean ± 95% CI over {n} seeds" if n > 1 else "one seed"


def fmt_names(names: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def overview(sweep: Sweep) -> str:
    """What the sweep holds and what it is compared on, in one sentence."""
    runs, q = sweep.runs, sweep.quality
    completed = sum(r.completed for r in runs)
    seeds = sweep.seeds
    better = "higher" if q.higher_is_better else "lower"
    seed_text = f"seeds {', '.join(map(str, seeds))}" if seeds else "no seed recorded"
    return (
        f"`{sweep.dir}`: {len(runs)} runs in {len(sweep.points)} points ({seed_text}), "
        f"{completed} completed, {len(runs) - completed} failed. Runs are compared on "
        f"{q.name} ({q.test}, {better} is better)."
    )


def nothing_to_draw(title: str) -> str:
    """What stands in the report where a figure had nothing to draw."""
    return f"_{title}: nothing to draw._"


def difference_note(quality: Quality) -> str:
    return DIFFERENCE_NOTE.format(what=quality.name)


def rates_note(quality: Quality) -> str:
    return RATES_NOTE.format(quality=quality.name)


def speed_note(schedule: Schedule) -> str:
    return SPEED_NOTE.format(rounds=schedule.rounds, steps=schedule.steps_per_round)


def forgetting_note(forgetting: Forgetting, quality: Quality) -> str:
    metric = forgetting.metric
    return FORGETTING_NOTE.format(
        source=forgetting.source or metric.key,
        quality=quality.name,
        metric=metric.name,
        direction="points of accuracy" if metric.percent else "rise in perplexity",
    )


def rate_edges(searches: Sequence[RateSearch]) -> str | None:
    """A bullet per point whose best rate lies at its grid's edge; None if none does."""
    edges = [
        f"- **{s.label}**: best rate at the grid's edge (the {s.at_edge}, {s.chosen.lr:g}): "
        "widen the grid."
        for s in searches
        if s.at_edge
    ]
    return "\n".join(edges) if edges else None


def runs_in_csv(n_runs: int, csv_name: str) -> str:
    """Where the run table went when the sweep is too long to list its runs in the report."""
    return (
        f"The {n_runs} runs, one row each (seed, learning rate, metrics, memory, "
        f"step time, checkpoint, status), are in [`{csv_name}`]({csv_name}) beside this report."
    )


def rank_gaps(analysis: RankAnalysis) -> list[str]:
    """A sentence per full fine-tuning run the rank analysis had nothing to diff for."""
    return [
        f"{label}: no checkpoint or base checkpoint to diff, so no full-FT update."
        for label in analysis.undiffed
    ]


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


def cost_sentences(
    points: Sequence[Point], full: Point | None, speed: SpeedProbe | None
) -> list[str]:
    """Step time and memory of a typical LoRA point against full: the probe's, then per run."""
    lora = typical_lora(points)
    if not (full and lora):
        return []
    sentences = []
    probed = (speed.get(lora), speed.get(full)) if speed else (None, None)
    if all(probed):
        a, b = probed
        sentences.append(
            f"In the interleaved probe (every point's training step timed in turns in one "
            f"process, so machine load hits all alike), {lora.label} takes {a.step_ms:.1f} ms "
            f"per training step (its fastest) against {b.step_ms:.1f} ms for full fine-tuning "
            f"(x{a.step_ms / b.step_ms:.2f}), and its step holds "
            f"{a.memory_bytes / 2**20:.1f} MiB of weights, gradients, optimizer state and "
            f"activations against {b.memory_bytes / 2**20:.1f} MiB "
            f"(x{a.memory_bytes / b.memory_bytes:.2f})."
        )
    per_run = [p.estimate(step_time) for p in (lora, full)]
    if all(per_run):
        label = "Timed per run instead" if all(probed) else "Timed per run"
        sentences.append(
            f"{label}, each while it trained beside whatever else the machine ran, the mean step "
            f"times were {per_run[0].mean:.1f} and {per_run[1].mean:.1f} ms."
        )
    inversion = ranking_inversion(points, speed)
    if inversion:
        slow, fast = inversion
        sentences.append(
            f"Per run, {slow.label} looks slower than {fast.label}; the probe, which times "
            "them side by side, finds the opposite, so the per-run ranking is an artefact of "
            "machine load."
        )
    state = [p.estimate(lambda r: r.summary.train_state_mib) for p in (lora, full)]
    if all(state):
        sentences.append(
            f"Weights, gradients and optimizer state take {state[0].mean:.1f} MiB against "
            f"{state[1].mean:.1f} MiB (x{state[0].mean / state[1].mean:.2f})."
        )
    return sentences

"""The report's tables of points (runs grouped over seeds): quality with intervals, the
paired differences from full fine-tuning, the probe's speed and memory, and forgetting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loralab.keys import START
from loralab.report.compare import Comparison
from loralab.report.forgetting import Forgetting
from loralab.report.markdown import fmt_bytes, fmt_count, fmt_percent, fmt_plain, fmt_targets, table
from loralab.report.numbers import (
    fmt_change,
    fmt_estimate,
    fmt_interval,
    fmt_mean_difference,
    fmt_plain_estimate,
    fmt_value,
)
from loralab.report.points import Point
from loralab.report.quality import Quality
from loralab.report.rates import RateSearch, run_rate
from loralab.report.stats import wilson_interval
from loralab.report.sweep import Sweep


def _seeds(point: Point) -> str:
    done, total = len(point.completed), len(point.runs)
    return str(done) if done == total else f"{done} of {total}"


def wilson_cell(point: Point, quality: Quality) -> str:
    """The binomial 95% interval of a one-seed point's test accuracy; '–' otherwise."""
    run = point.first
    accuracy, n = quality.test_value(run), run.summary.test_size
    if len(point.completed) != 1 or accuracy is None or not n:
        return "–"
    low, high = wilson_interval(accuracy, n)
    return f"{100 * low:.1f}-{100 * high:.1f}% (n={n:,})"


def point_table(sweep: Sweep) -> str:
    """One row per point: its settings, then best val and test quality as mean ± 95% CI."""
    q = sweep.quality
    searched = {s.label for s in sweep.searches if s.chosen is not None}
    columns: list[tuple[str, Callable[[Point], str]]] = [
        ("point", lambda p: p.label),
        ("adapter", lambda p: UNTRAINED if p.untrained else str(p.first.summary.adapter or "–")),
        ("rank", lambda p: fmt_plain(p.first.summary.rank)),
        ("alpha", lambda p: fmt_plain(p.first.summary.alpha)),
        ("targets", lambda p: fmt_targets(p.first.summary.targets)),
        ("lr", lambda p: _rate(p, searched)),
        ("trainable params", lambda p: _trained(p, fmt_count(p.first.summary.trainable_params))),
        ("% of total", lambda p: _trained(p, fmt_percent(p.first.summary.trainable_percent))),
        ("seeds", _seeds),
        (f"best val {q.name}", lambda p: fmt_estimate(p.estimate(q.best_val), q.percent)),
        (f"test {q.name}", lambda p: fmt_estimate(p.estimate(q.test_value), q.percent)),
    ]
    if q.percent and any(len(p.completed) == 1 for p in sweep.points):
        columns.append(("test accuracy, Wilson 95% (one seed)", lambda p: wilson_cell(p, q)))
    columns.append(("checkpoint", lambda p: fmt_bytes(p.first.summary.checkpoint_bytes)))
    rows = [[cell(p) for _, cell in columns] for p in sweep.points]
    return table([header for header, _ in columns], rows)


# what an evaluation-only point (the pretrained base, no step taken) shows for its adapter
UNTRAINED = "no training"


def _trained(point: Point, cell: str) -> str:
    """A count that only a trained point has: the base trained nothing, so it shows '–'."""
    return "–" if point.untrained else cell


def _rate(point: Point, searched: set[str]) -> str:
    """The point's learning rate; '(chosen on val)' where its grid's validation picked it."""
    if point.untrained:
        return "–"
    lr = run_rate(point.first)
    if lr is None:
        return "–"
    return f"{lr:g} (chosen on val)" if point.label in searched else f"{lr:g}"


def rate_table(searches: Sequence[RateSearch]) -> str:
    """One row per (point, rate): validation and test quality over seeds, and which was chosen."""
    rows = []
    for search in searches:
        q = search.quality
        for setting in search.settings:
            notes = []
            if setting is search.chosen:
                notes.append("**chosen**")
            if setting is search.hand_picked:
                notes.append("hand-picked")
            rows.append(
                [
                    search.label,
                    f"{setting.lr:g}",
                    _seeds(setting.point),
                    fmt_estimate(search.val(setting), q.percent),
                    fmt_estimate(search.test(setting), q.percent),
                    ", ".join(notes),
                ]
            )
    q = searches[0].quality
    header = ["point", "lr", "seeds", f"best val {q.name}", f"test {q.name}", ""]
    return table(header, rows)


def difference_table(comparisons: Sequence[Comparison], what: str, unit: str, points: bool) -> str:
    """One row per point: its paired difference from full fine-tuning, interval, verdict."""
    rows = []
    for c in comparisons:
        d = c.difference
        rows.append(
            [
                c.point.label,
                str(c.pairs),
                fmt_mean_difference(d, points) if d else "–",
                fmt_interval(d, points) if d and d.has_interval else "– (one pair)",
                c.verdict or "more seeds would tell",
            ]
        )
    header = ["point", "seeds paired", f"{what} - full ({unit})", "95% CI", "verdict"]
    return table(header, rows)


def speed_table(sweep: Sweep) -> str | None:
    """The probe's step time and memory beside each point's per-run (sequential) figures."""
    if sweep.speed is None:
        return None
    full = sweep.speed.get(sweep.reference) if sweep.reference else None
    rows = []
    for point in sweep.points:
        probed = sweep.speed.get(point)
        per_run_time = point.estimate(lambda r: r.summary.step_time_ms)
        per_run_peak = point.estimate(lambda r: r.summary.peak_memory_mib)
        cells = [point.label]
        if probed:
            cells += [
                f"{probed.step_ms:.1f}",
                f"x{probed.step_ms / full.step_ms:.2f}" if full else "–",
                f"{probed.median_ms:.1f}",
                f"{probed.memory_bytes / 2**20:.2f}",
                f"x{probed.memory_bytes / full.memory_bytes:.2f}" if full else "–",
                " / ".join(
                    f"{b / 2**20:.2f}"
                    for b in (
                        probed.parameters,
                        probed.gradients,
                        probed.optimizer_state,
                        probed.activations,
                    )
                ),
            ]
        else:
            cells += [sweep.speed.errors.get(point.label, "not probed"), "", "", "", "", ""]
        cells += [fmt_plain_estimate(per_run_time, 1), fmt_plain_estimate(per_run_peak, 0)]
        rows.append(cells)
    header = [
        "point",
        "probe: step (ms)",
        "probe: vs full",
        "probe: median step (ms)",
        "probe: step memory (MiB)",
        "probe: vs full",
        "probe: weights / grads / optimizer / activations (MiB)",
        "per run: step (ms)",
        "per run: peak RSS (MiB)",
    ]
    return table(header, rows)


def forgetting_table(forgetting: Forgetting, quality: Quality) -> str:
    """Per point: target gain, source before and after, forgetting, and against full FT."""
    metric = forgetting.metric
    by_point = {c.point.label: c for c in forgetting.comparisons}
    gain_unit = "points" if quality.percent else quality.name
    rows = []
    for point in forgetting.points:
        c = by_point.get(point.label)
        d = c.difference if c else None
        rows.append(
            [
                point.label,
                _seeds(point),
                fmt_change(point.estimate(forgetting.gain), quality.percent),
                fmt_value(_mean(point, lambda r: r.metric(metric.key + START)), metric.percent),
                fmt_value(_mean(point, lambda r: r.metric(metric.key)), metric.percent),
                fmt_change(point.estimate(metric.change), metric.percent),
                fmt_mean_difference(d, metric.percent) if d else "–",
                fmt_interval(d, metric.percent) if d and d.has_interval else "–",
                forgetting_verdict(c),
            ]
        )
    header = [
        "point",
        "seeds",
        f"gain on target ({gain_unit})",
        f"source {metric.name} before",
        "after",
        f"forgetting ({metric.unit})",
        "forgetting - full",
        "95% CI",
        "verdict",
    ]
    return table(header, rows)


FORGETTING_WORDS = {"better": "forgets less", "worse": "forgets more"}


def forgetting_verdict(comparison: Comparison | None) -> str:
    """A forgetting comparison in words: less forgetting is the better result."""
    if comparison is None:
        return "reference"
    if comparison.verdict is None:
        return "more seeds would tell"
    return FORGETTING_WORDS.get(comparison.verdict, comparison.verdict)


def _mean(point: Point, value: Callable) -> float | None:
    est = point.estimate(value)
    return est.mean if est else None

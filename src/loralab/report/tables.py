"""The report's tables, as Markdown: one row per point (quality with intervals, the paired
differences from full fine-tuning, learning rates, the probe's speed and memory, forgetting),
one row per run (also written as runs.csv), failed runs and the rank analysis. A cell holds
a number or a short label, never a sentence: those are in `prose.py`."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loralab.io import atomic_path
from loralab.keys import START
from loralab.report.collect import SweepRun
from loralab.report.compare import Comparison
from loralab.report.forgetting import Forgetting
from loralab.report.format import (
    fmt_bytes,
    fmt_change,
    fmt_count,
    fmt_estimate,
    fmt_interval,
    fmt_mean_difference,
    fmt_number,
    fmt_percent,
    fmt_plain,
    fmt_plain_estimate,
    fmt_targets,
    fmt_value,
    table,
)
from loralab.report.points import Point
from loralab.report.quality import Quality
from loralab.report.ranks import (
    RankAnalysis,
    SubspaceComparison,
    module_kind,
    ranks_by_kind,
    spread,
)
from loralab.report.rates import RateSearch, run_rate
from loralab.report.stats import wilson_interval
from loralab.report.sweep import Sweep
from loralab.run.summary import RunSummary


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


# summary fields that tell runs apart only sometimes (e.g. QLoRA's quantised base): a column
# when any run has one
EXTRA_COLUMNS: list[tuple[str, Callable[[RunSummary], Any]]] = [
    ("base weights", lambda s: s.base_weight_bytes),
    ("frozen linear weights", lambda s: s.frozen_linear_bytes),
]


def _columns(quality: Quality) -> list[tuple[str, Callable[[SweepRun], str]]]:
    """(header, cell of a run) for every column of the run table."""
    return [
        ("run", lambda r: r.name),
        ("folder", lambda r: r.job),
        ("seed", lambda r: fmt_plain(r.seed) if isinstance(r.seed, int) else str(r.seed or "–")),
        ("adapter", lambda r: UNTRAINED if r.untrained else str(r.summary.adapter or "–")),
        ("rank", lambda r: fmt_plain(r.summary.rank)),
        ("alpha", lambda r: fmt_plain(r.summary.alpha)),
        ("targets", lambda r: fmt_targets(r.summary.targets)),
        ("lr", lambda r: f"{r.summary.lr:g}" if isinstance(r.summary.lr, int | float) else "–"),
        (
            "trainable params",
            lambda r: "–" if r.untrained else fmt_count(r.summary.trainable_params),
        ),
        ("% of total", lambda r: "–" if r.untrained else fmt_percent(r.summary.trainable_percent)),
        (f"best val {quality.name}", lambda r: fmt_value(quality.best_val(r), quality.percent)),
        (f"test {quality.name}", lambda r: fmt_value(quality.test_value(r), quality.percent)),
        ("peak memory (MiB)", lambda r: fmt_number(r.summary.peak_memory_mib, 0)),
        ("weights+grads+optimizer (MiB)", lambda r: fmt_number(r.summary.train_state_mib)),
        ("step time, this run (ms)", lambda r: fmt_number(r.summary.step_time_ms)),
        ("checkpoint", lambda r: fmt_bytes(r.summary.checkpoint_bytes)),
    ]


def run_columns(
    runs: Sequence[SweepRun], quality: Quality
) -> list[tuple[str, Callable[[SweepRun], str]]]:
    """The run table's columns; extra ones for fields some runs add, the status last."""
    columns = _columns(quality)
    for header, field in EXTRA_COLUMNS:
        if any(field(r.summary) is not None for r in runs):
            columns.append((header, lambda r, field=field: fmt_bytes(field(r.summary))))
    columns.append(("status", lambda r: r.status))
    return columns


def run_table(runs: Sequence[SweepRun], quality: Quality) -> str:
    """One row per run, failed runs included."""
    columns = run_columns(runs, quality)
    rows = [[cell(run) for _, cell in columns] for run in runs]
    return table([header for header, _ in columns], rows)


def write_runs_csv(runs: Sequence[SweepRun], quality: Quality, path: Path) -> Path:
    """The run table as CSV (the same cells), for a spreadsheet or a sweep too long to read."""
    columns = run_columns(runs, quality)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["folder path", *(header for header, _ in columns)])
        for run in runs:
            writer.writerow([str(run.dir), *(cell(run) for _, cell in columns)])
    return path


def failed_table(runs: Sequence[SweepRun]) -> str | None:
    failed = [r for r in runs if not r.completed]
    if not failed:
        return None
    rows = []
    for run in failed:
        error = str(run.summary.error or "no error recorded").splitlines()[0]
        rows.append([run.job, run.name, error[:240]])
    return table(["folder", "run", "error"], rows)


def energy_table(analysis: RankAnalysis) -> str | None:
    """Rows: module kinds (q, v, ...); columns: points; cells: 90% / 99% energy rank, each as
    the median and range over the kind's layers (every module is in ranks.csv)."""
    by_point = {label: ranks_by_kind(ranks) for label, ranks in analysis.ranks.items()}
    kinds = list(dict.fromkeys(kind for kinds in by_point.values() for kind in kinds))
    if not kinds:
        return None
    rows = []
    for kind in kinds:
        entries = [k[kind] for k in by_point.values() if kind in k]
        cells = [
            f"{spread(k[kind].rank90)} / {spread(k[kind].rank99)}" if kind in k else "–"
            for k in by_point.values()
        ]
        layers = max(e.modules for e in entries)
        rows.append([kind, str(layers), str(max(e.full_rank for e in entries)), *cells])
    return table(["module kind", "layers", "full rank", *analysis.ranks], rows)


def subspace_table(comparison: SubspaceComparison) -> str:
    """phi at three (i, j) corners per module kind (median and range over its layers), with
    what random subspaces would give."""
    small, large = comparison.small_rank, comparison.large_rank
    groups: dict[str, list[str]] = {}
    for module in comparison.grids:
        groups.setdefault(module_kind(module), []).append(module)
    rows = []
    for kind, modules in groups.items():
        grids = [comparison.grids[m] for m in modules]
        d = comparison.input_dim[modules[0]]
        i_max, j_max = grids[0].shape
        corners = [(0, 0, 1), (i_max - 1, i_max - 1, i_max), (i_max - 1, j_max - 1, j_max)]
        cells = [
            f"{_phi_spread([float(g[i, j]) for g in grids])}; random {k / d:.2f}"
            for i, j, k in corners
        ]
        rows.append([kind, str(len(modules)), *cells])
    header = [
        "module kind",
        "layers",
        "phi(1, 1)",
        f"phi({small}, {small})",
        f"phi({small}, {large})",
    ]
    return table(header, rows)


def _phi_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

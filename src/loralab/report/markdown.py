"""The report's tables, as Markdown: the run table (every run folder), failed runs and the
rank analysis; the tables of points are in `point_tables.py`."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loralab.io import atomic_path
from loralab.report.collect import SweepRun
from loralab.report.quality import Quality
from loralab.report.ranks import (
    RankAnalysis,
    SubspaceComparison,
    module_kind,
    ranks_by_kind,
    spread,
)
from loralab.run.summary import RunSummary


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; `|` inside a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def fmt_count(n: Any) -> str:
    return f"{int(n):,}" if isinstance(n, int | float) else "–"


def fmt_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_number(n: Any, digits: int = 1) -> str:
    return f"{n:.{digits}f}" if isinstance(n, int | float) else "–"


def fmt_plain(n: Any) -> str:
    """16 -> '16', 0.5 -> '0.5'."""
    return f"{n:g}" if isinstance(n, int | float) else "–"


def fmt_percent(n: Any) -> str:
    if not isinstance(n, int | float):
        return "–"
    return f"{n:.2f}%" if n < 10 else f"{n:.1f}%"


def fmt_targets(targets: Any) -> str:
    if not targets:
        return "–"
    return ",".join(str(t) for t in targets) if isinstance(targets, list) else str(targets)


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
        ("adapter", lambda r: "no training" if r.untrained else str(r.summary.adapter or "–")),
        ("rank", lambda r: fmt_plain(r.summary.rank)),
        ("alpha", lambda r: fmt_plain(r.summary.alpha)),
        ("targets", lambda r: fmt_targets(r.summary.targets)),
        ("lr", lambda r: f"{r.summary.lr:g}" if isinstance(r.summary.lr, int | float) else "–"),
        (
            "trainable params",
            lambda r: "–" if r.untrained else fmt_count(r.summary.trainable_params),
        ),
        ("% of total", lambda r: "–" if r.untrained else fmt_percent(r.summary.trainable_percent)),
        (f"best val {quality.name}", lambda r: quality.format(quality.best_val(r))),
        (f"test {quality.name}", lambda r: quality.format(quality.test_value(r))),
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
    return table(header, rows) + (
        "\n\nEach cell: the median over the kind's layers (their range in brackets), then the "
        "expected value for random subspaces."
    )


def _phi_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

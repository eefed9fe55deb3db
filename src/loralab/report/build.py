"""Assemble a sweep's report: collect its runs, analyse the sweep, then lay out the sections
of report.md from the tables, the prose and the figures, with the PNGs and CSVs beside it.
This module only orders what the others write: its own text is the section headings."""

from __future__ import annotations

from pathlib import Path

from loralab.errors import MissingFileError
from loralab.report import figures, prose, tables
from loralab.report.collect import collect_runs
from loralab.report.ranks import RANKS_CSV, RankAnalysis, write_ranks_csv
from loralab.report.sweep import Sweep, analyse_sweep

REPORT_FILE = "report.md"
RUNS_CSV = "runs.csv"
# a sweep with more runs lists them in runs.csv only, so the report stays a page to read
MAX_RUN_ROWS = 15


def sweep_title(sweep_dir: Path) -> str:
    """logs/rank_sweep/multiruns/<time> -> 'rank_sweep, <time>'; any other folder: its name."""
    if sweep_dir.parent.name == "multiruns":
        return f"{sweep_dir.parent.parent.name}, {sweep_dir.name}"
    return sweep_dir.name


def _image(title: str, path: Path | None) -> str:
    return f"![{title}]({path.name})" if path else prose.nothing_to_draw(title)


def _quality_sections(sweep: Sweep) -> list[str]:
    """Overview, findings, the points with intervals and their paired differences."""
    q = sweep.quality
    parts = [
        f"# Sweep report: {sweep_title(sweep.dir)}",
        prose.overview(sweep),
        "## Findings",
        prose.findings(sweep),
        "## Points (mean ± 95% CI over seeds)",
        tables.point_table(sweep),
        prose.POINTS_NOTE,
        prose.COUNTING_NOTE,
    ]
    if sweep.comparisons:
        unit = "points" if q.percent else q.name
        parts += [
            "## Against full fine-tuning, paired by seed",
            tables.difference_table(sweep.comparisons, f"test {q.name}", unit, q.percent),
            prose.difference_note(q),
        ]
    return parts


def _rate_sections(sweep: Sweep) -> list[str]:
    """Each point's learning-rate grid, the rate chosen on validation, and their figures."""
    if not sweep.searches:
        return []
    q, d = sweep.quality, sweep.dir
    parts = [
        "## Learning rates: each point at its best rate on validation",
        tables.rate_table(sweep.searches),
        prose.rates_note(q),
    ]
    edges = prose.rate_edges(sweep.searches)
    if edges:
        parts.append(edges)
    parts.append(
        _image(
            f"{q.name} against the learning rate",
            figures.rate_curves(sweep.searches, q, d / "rates.png"),
        )
    )
    if sweep.forgetting:
        frontier = figures.forgetting_frontier(
            sweep.searches, sweep.forgetting, q, d / "forgetting_frontier.png"
        )
        if frontier:
            parts += ["### Learning vs forgetting over every rate", _image("frontier", frontier)]
    return parts


def _figure_sections(sweep: Sweep) -> list[str]:
    """Curves, quality against parameters, speed and memory, forgetting."""
    d, q, points = sweep.dir, sweep.quality, sweep.points
    parts = [
        "## Training curves (mean over seeds; band: 95% CI)",
        _image("validation and training curves", figures.curves(points, q, d / "curves.png")),
        f"## Test {q.name} vs trainable parameters (bars: 95% CI)",
        _image(
            "quality vs trainable parameters",
            figures.quality_vs_params(points, q, d / "quality_vs_params.png"),
        ),
        "## Speed and memory",
    ]
    table = tables.speed_table(sweep)
    if table:
        parts += [table, prose.speed_note(sweep.speed.schedule)]
    else:
        parts.append(prose.NO_PROBE_NOTE)
    parts += [
        _image(
            "step time and memory",
            figures.resources(points, sweep.speed, d / "resources.png"),
        ),
        _image(
            "trainable parameters", figures.trainable_params(points, d / "trainable_params.png")
        ),
    ]
    forgetting = sweep.forgetting
    if forgetting:
        parts += [
            "## Forgetting: learning on the target against loss on the source",
            tables.forgetting_table(forgetting, q),
            prose.forgetting_note(forgetting, q),
            _image(
                "learning vs forgetting",
                figures.learning_vs_forgetting(forgetting, q, d / "learning_vs_forgetting.png"),
            ),
        ]
    return parts


def _run_sections(sweep: Sweep) -> list[str]:
    """Every run folder as a row (in runs.csv; in the report too while the sweep is short)."""
    tables.write_runs_csv(sweep.runs, sweep.quality, sweep.dir / RUNS_CSV)
    parts = ["## Runs (every run folder)"]
    if len(sweep.runs) <= MAX_RUN_ROWS:
        parts.append(tables.run_table(sweep.runs, sweep.quality))
    else:
        parts.append(prose.runs_in_csv(len(sweep.runs), RUNS_CSV))
    failed = tables.failed_table(sweep.runs)
    if failed:
        parts += ["### Failed runs", failed]
    return parts


def _rank_sections(sweep_dir: Path, analysis: RankAnalysis) -> list[str]:
    """Energy ranks and spectra of the updates; subspace similarity of two adapters."""
    write_ranks_csv(analysis, sweep_dir / RANKS_CSV)
    parts = [
        "## Rank analysis: is the update low-rank?",
        prose.RANK_NOTE,
        tables.energy_table(analysis) or prose.NO_RANKS_NOTE,
        *prose.rank_gaps(analysis),
        _image(
            "full fine-tuning spectra",
            figures.spectra(analysis, "full", sweep_dir / "spectrum_full.png"),
        ),
        _image("LoRA spectra", figures.spectra(analysis, "lora", sweep_dir / "spectrum_lora.png")),
    ]
    comparison = analysis.subspace
    if comparison is not None:
        parts += [
            f"### Subspace similarity of the r={comparison.small_rank} and "
            f"r={comparison.large_rank} adapters",
            prose.SUBSPACE_NOTE,
            tables.subspace_table(comparison),
            prose.SUBSPACE_CELLS_NOTE,
            _image(
                "subspace similarity",
                figures.subspace(comparison, sweep_dir / "subspace.png"),
            ),
        ]
    return parts


def build_report(sweep_dir: str | Path, probe: str = "auto") -> Path:
    """Write SWEEP_DIR/report.md and its PNGs; return the report's path.

    probe: "auto" reuses SWEEP_DIR/probe.json when it covers the same points, else runs the
    interleaved speed probe; "always" runs it again; "never" leaves it out.
    """
    sweep_dir = Path(sweep_dir).resolve()
    runs = collect_runs(sweep_dir)
    if not runs:
        raise MissingFileError(
            f"SWEEP_DIR: {sweep_dir} holds no run folders; pass the folder of a "
            "`python -m loralab.train -m ...` sweep (logs/<task>/multiruns/<time>/)."
        )
    sweep = analyse_sweep(sweep_dir, runs, probe)
    parts = [
        *_quality_sections(sweep),
        *_rate_sections(sweep),
        *_figure_sections(sweep),
        *_run_sections(sweep),
        *_rank_sections(sweep_dir, sweep.ranks),
    ]
    report = sweep_dir / REPORT_FILE
    report.write_text("\n\n".join(parts) + "\n")
    return report

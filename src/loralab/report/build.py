"""Assemble a sweep's report: collect runs, draw the figures, write report.md beside them."""

from __future__ import annotations

from pathlib import Path

from loralab.errors import MissingFileError
from loralab.report import plots
from loralab.report.collect import Run, collect_runs
from loralab.report.findings import findings
from loralab.report.markdown import energy_table, failed_table, run_table, subspace_table
from loralab.report.quality import Quality, choose_quality
from loralab.report.ranks import RankAnalysis, analyse_runs

REPORT_FILE = "report.md"
COUNTING_NOTE = (
    "Trainable parameters count every weight that trains: the adapter's matrices plus any "
    "module trained in full beside them (`adapter.trainable`, e.g. a new classifier head, "
    "which full fine-tuning trains too); % of total is of all the adapted model's "
    "parameters, the adapter's included."
)
RANK_NOTE = (
    "How low-rank is the change fine-tuning makes? For each attention projection, delta W "
    "is W_finetuned - W_pretrained for full fine-tuning and scaling * B @ A for LoRA (for PiSSA "
    "and DoRA adapters: the merged weight - W_pretrained). The "
    "table gives the smallest rank k whose top-k singular values hold 90% / 99% of "
    "||delta W||_F^2 (the update's energy); `full rank` is the matrix's own rank limit."
)
SUBSPACE_NOTE = (
    "Do adapters of different ranks learn the same directions? As in the LoRA paper "
    "(section 7.2): phi(i, j) = ||U_i^T V_j||_F^2 / min(i, j) between the top-i input "
    "directions (right singular vectors) of one update and the top-j of the other; "
    "1 = one subspace contains the other, 0 = orthogonal."
)


def sweep_title(sweep_dir: Path) -> str:
    """logs/rank_sweep/multiruns/<time> -> 'rank_sweep, <time>'; any other folder: its name."""
    if sweep_dir.parent.name == "multiruns":
        return f"{sweep_dir.parent.parent.name}, {sweep_dir.name}"
    return sweep_dir.name


def _image(title: str, path: Path | None) -> str:
    return f"![{title}]({path.name})" if path else f"_{title}: nothing to draw._"


def _run_sections(
    sweep_dir: Path, runs: list[Run], quality: Quality, analysis: RankAnalysis
) -> list[str]:
    """Overview, findings, the run table, failures, curves and cost."""
    completed = sum(r.completed for r in runs)
    better = "higher" if quality.higher_is_better else "lower"
    parts = [
        f"# Sweep report: {sweep_title(sweep_dir)}",
        f"`{sweep_dir}`: {len(runs)} runs, {completed} completed, {len(runs) - completed} "
        f"failed. Runs are compared on {quality.name} ({quality.test}, {better} is better).",
        "## Findings",
        findings(runs, quality, analysis),
        "## Runs",
        run_table(runs, quality),
        COUNTING_NOTE,
    ]
    failed = failed_table(runs)
    if failed:
        parts += ["### Failed runs", failed]
    return parts + [
        "## Training curves",
        _image(
            "validation and training curves", plots.curves(runs, quality, sweep_dir / "curves.png")
        ),
        f"## Test {quality.name} vs trainable parameters",
        _image(
            "quality vs trainable parameters",
            plots.quality_vs_params(runs, quality, sweep_dir / "quality_vs_params.png"),
        ),
        "## Cost",
        _image(
            "trainable parameters", plots.trainable_params(runs, sweep_dir / "trainable_params.png")
        ),
        _image(
            "peak memory, train state and step time",
            plots.resources(runs, sweep_dir / "resources.png"),
        ),
    ]


def _rank_sections(sweep_dir: Path, analysis: RankAnalysis) -> list[str]:
    """Energy ranks and spectra of the updates; subspace similarity of two adapters."""
    parts = [
        "## Rank analysis: is the update low-rank?",
        RANK_NOTE,
        energy_table(analysis) or "_No run left weights to analyse._",
        *analysis.notes,
        _image(
            "full fine-tuning spectra",
            plots.spectra(analysis, "full", sweep_dir / "spectrum_full.png"),
        ),
        _image("LoRA spectra", plots.spectra(analysis, "lora", sweep_dir / "spectrum_lora.png")),
    ]
    comparison = analysis.subspace
    if comparison is not None:
        parts += [
            f"### Subspace similarity of the r={comparison.small_rank} and "
            f"r={comparison.large_rank} adapters",
            SUBSPACE_NOTE,
            subspace_table(comparison),
            _image("subspace similarity", plots.subspace(comparison, sweep_dir / "subspace.png")),
        ]
    return parts


def build_report(sweep_dir: str | Path) -> Path:
    """Write SWEEP_DIR/report.md and its PNGs; return the report's path."""
    sweep_dir = Path(sweep_dir).resolve()
    runs = collect_runs(sweep_dir)
    if not runs:
        raise MissingFileError(
            f"SWEEP_DIR: {sweep_dir} holds no run folders; pass the folder of a "
            "`python -m loralab.train -m ...` sweep (logs/<task>/multiruns/<time>/)."
        )
    quality = choose_quality(runs)
    analysis = analyse_runs(runs)
    report = sweep_dir / REPORT_FILE
    parts = _run_sections(sweep_dir, runs, quality, analysis) + _rank_sections(sweep_dir, analysis)
    report.write_text("\n\n".join(parts) + "\n")
    return report

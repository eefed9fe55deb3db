"""Assemble a sweep's report: collect runs, analyse the sweep, write report.md and its figures."""

from __future__ import annotations

from pathlib import Path

from loralab.errors import MissingFileError
from loralab.report import cost_plots, plots, rank_plots, rate_plots
from loralab.report.collect import collect_runs
from loralab.report.findings import findings
from loralab.report.markdown import (
    energy_table,
    failed_table,
    run_table,
    subspace_table,
    write_runs_csv,
)
from loralab.report.point_tables import (
    difference_table,
    forgetting_table,
    point_table,
    rate_table,
    speed_table,
)
from loralab.report.ranks import RANKS_CSV, RankAnalysis, write_ranks_csv
from loralab.report.sweep import Sweep, analyse_sweep

REPORT_FILE = "report.md"
RUNS_CSV = "runs.csv"
# a sweep with more runs lists them in runs.csv only, so the report stays a page to read
MAX_RUN_ROWS = 15
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
    "*per run* columns are each run's own figures, measured while it trained, one run after "
    "another (mean ± 95% CI over seeds; peak RSS is the process's resident memory, shared by "
    "the runs of a sweep): they include whatever else the machine was doing, so a speed "
    "ranking should be read from the probe."
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


def sweep_title(sweep_dir: Path) -> str:
    """logs/rank_sweep/multiruns/<time> -> 'rank_sweep, <time>'; any other folder: its name."""
    if sweep_dir.parent.name == "multiruns":
        return f"{sweep_dir.parent.parent.name}, {sweep_dir.name}"
    return sweep_dir.name


def _image(title: str, path: Path | None) -> str:
    return f"![{title}]({path.name})" if path else f"_{title}: nothing to draw._"


def _overview(sweep: Sweep) -> str:
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


def _quality_sections(sweep: Sweep) -> list[str]:
    """Overview, findings, the points with intervals and their paired differences."""
    q = sweep.quality
    parts = [
        f"# Sweep report: {sweep_title(sweep.dir)}",
        _overview(sweep),
        "## Findings",
        findings(sweep),
        "## Points (mean ± 95% CI over seeds)",
        point_table(sweep),
        POINTS_NOTE,
        COUNTING_NOTE,
    ]
    if sweep.comparisons:
        unit = "points" if q.percent else q.name
        parts += [
            "## Against full fine-tuning, paired by seed",
            difference_table(sweep.comparisons, f"test {q.name}", unit, q.percent),
            DIFFERENCE_NOTE.format(what=q.name),
        ]
    return parts


def _rate_sections(sweep: Sweep) -> list[str]:
    """Each point's learning-rate grid, the rate chosen on validation, and their figures."""
    if not sweep.searches:
        return []
    q, d = sweep.quality, sweep.dir
    parts = [
        "## Learning rates: each point at its best rate on validation",
        rate_table(sweep.searches),
        RATES_NOTE.format(quality=q.name),
    ]
    edges = [
        f"- **{s.label}**: best rate at the grid's edge (the {s.at_edge}, {s.chosen.lr:g}): "
        "widen the grid."
        for s in sweep.searches
        if s.at_edge
    ]
    if edges:
        parts.append("\n".join(edges))
    parts.append(
        _image(
            f"{q.name} against the learning rate",
            rate_plots.rate_curves(sweep.searches, q, d / "rates.png"),
        )
    )
    if sweep.forgetting:
        frontier = rate_plots.forgetting_frontier(
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
        _image("validation and training curves", plots.curves(points, q, d / "curves.png")),
        f"## Test {q.name} vs trainable parameters (bars: 95% CI)",
        _image(
            "quality vs trainable parameters",
            plots.quality_vs_params(points, q, d / "quality_vs_params.png"),
        ),
        "## Speed and memory",
    ]
    table = speed_table(sweep)
    if table:
        schedule = sweep.speed.schedule
        parts += [
            table,
            SPEED_NOTE.format(rounds=schedule.rounds, steps=schedule.steps_per_round),
        ]
    else:
        parts.append(
            "_No probe: the figures below are each run's own, measured one run after another "
            "(`python -m loralab.report SWEEP_DIR` runs the probe unless `--no-probe`)._"
        )
    parts += [
        _image(
            "step time and memory",
            cost_plots.resources(points, sweep.speed, d / "resources.png"),
        ),
        _image(
            "trainable parameters", cost_plots.trainable_params(points, d / "trainable_params.png")
        ),
    ]
    forgetting = sweep.forgetting
    if forgetting:
        metric = forgetting.metric
        direction = "points of accuracy" if metric.percent else "rise in perplexity"
        parts += [
            "## Forgetting: learning on the target against loss on the source",
            forgetting_table(forgetting, q),
            FORGETTING_NOTE.format(
                source=forgetting.source or metric.key,
                quality=q.name,
                metric=metric.name,
                direction=direction,
            ),
            _image(
                "learning vs forgetting",
                plots.learning_vs_forgetting(forgetting, q, d / "learning_vs_forgetting.png"),
            ),
        ]
    return parts


def _run_sections(sweep: Sweep) -> list[str]:
    """Every run folder as a row (in runs.csv; in the report too while the sweep is short)."""
    write_runs_csv(sweep.runs, sweep.quality, sweep.dir / RUNS_CSV)
    if len(sweep.runs) <= MAX_RUN_ROWS:
        parts = ["## Runs (every run folder)", run_table(sweep.runs, sweep.quality)]
    else:
        parts = [
            "## Runs (every run folder)",
            f"The {len(sweep.runs)} runs, one row each (seed, learning rate, metrics, memory, "
            f"step time, checkpoint, status), are in [`{RUNS_CSV}`]({RUNS_CSV}) beside this report.",
        ]
    failed = failed_table(sweep.runs)
    if failed:
        parts += ["### Failed runs", failed]
    return parts


def _rank_sections(sweep_dir: Path, analysis: RankAnalysis) -> list[str]:
    """Energy ranks and spectra of the updates; subspace similarity of two adapters."""
    write_ranks_csv(analysis, sweep_dir / RANKS_CSV)
    parts = [
        "## Rank analysis: is the update low-rank?",
        RANK_NOTE,
        energy_table(analysis) or "_No run left weights to analyse._",
        *analysis.notes,
        _image(
            "full fine-tuning spectra",
            rank_plots.spectra(analysis, "full", sweep_dir / "spectrum_full.png"),
        ),
        _image(
            "LoRA spectra", rank_plots.spectra(analysis, "lora", sweep_dir / "spectrum_lora.png")
        ),
    ]
    comparison = analysis.subspace
    if comparison is not None:
        parts += [
            f"### Subspace similarity of the r={comparison.small_rank} and "
            f"r={comparison.large_rank} adapters",
            SUBSPACE_NOTE,
            subspace_table(comparison),
            _image(
                "subspace similarity",
                rank_plots.subspace(comparison, sweep_dir / "subspace.png"),
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

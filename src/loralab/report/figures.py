"""The report's figures: matplotlib PNGs with titles, axis labels and legends.

A point is drawn as the mean over its seeds with its 95% confidence interval: error bars on
a marker, a band around a curve. Each figure function draws one figure, writes it through
`save_figure` to `path` and returns the path, or returns None when the sweep has nothing to
draw. In order: training curves, quality against trainable parameters, learning against
forgetting; the cost figures (trainable parameters, the probe's step time and memory beside
the per-run figures); the rank analysis (spectra of the updates, subspace similarity of two
adapters); the learning-rate figures (quality against the rate, and the forgetting frontier,
as Biderman et al. (2024) compare LoRA with full fine-tuning: one line per point through the
rates of its grid, a star at the rate chosen on validation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in tests and on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from loralab.analysis import projection_of  # noqa: E402
from loralab.report.collect import Curve, SweepRun  # noqa: E402
from loralab.report.forgetting import Forgetting  # noqa: E402
from loralab.report.points import Point  # noqa: E402
from loralab.report.quality import Quality  # noqa: E402
from loralab.report.ranks import RankAnalysis, SubspaceComparison  # noqa: E402
from loralab.report.rates import RateSearch  # noqa: E402
from loralab.report.speed import SpeedProbe, step_time  # noqa: E402
from loralab.report.stats import Estimate, estimate  # noqa: E402

FULL_COLOR = "black"
# points that trained nothing, e.g. the pretrained base evaluated as a reference
UNTRAINED_COLOR = "gray"
# how much the noisy per-step training loss is smoothed
SMOOTHING = 0.6
BAND = "shaded: 95% CI over seeds"


def point_colors(points: Sequence[Point]) -> dict[str, str]:
    """One colour per point, the same in every figure; full fine-tuning is black."""
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    colors, i = {}, 0
    for point in points:
        if point.is_full:
            colors[point.label] = FULL_COLOR
        elif point.untrained:
            colors[point.label] = UNTRAINED_COLOR
        else:
            colors[point.label] = matplotlib.colors.to_hex(palette[i % len(palette)])
            i += 1
    return colors


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """An exponential moving average, as TensorBoard's smoothing slider draws it."""
    out, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        out.append(last)
    return out


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Every figure of the report is written here: laid out (unless it has a layout engine of
    its own, e.g. constrained), saved as a PNG at one resolution, closed."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def error_bar(est: Estimate | None, scale: float = 1.0) -> float:
    """An error bar's half-length: the interval's half-width, 0 without an interval."""
    return scale * est.half_width if est is not None and est.has_interval else 0.0


def mean_curve(curves: Sequence[Curve]) -> tuple[list[int], list[Estimate]]:
    """The steps every curve has, and the mean with its interval over the curves at each."""
    if not curves:
        return [], []
    steps = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    values = [dict(c) for c in curves]
    return steps, [estimate([v[s] for v in values]) for s in steps]


def draw_band(ax: plt.Axes, steps: list[int], ests: list[Estimate], scale: float, **style) -> bool:
    """The mean curve with its interval as a band; False if there was nothing to draw."""
    if not steps:
        return False
    means = [scale * e.mean for e in ests]
    marker = "o" if len(steps) < 20 else None  # a short run logs a handful of points
    # one validation is a point, not a line: drawn big enough to see
    ax.plot(steps, means, marker=marker, ms=7 if len(steps) == 1 else 3, **style)
    if all(e.has_interval for e in ests):
        lows = [scale * e.low for e in ests]
        highs = [scale * e.high for e in ests]
        ax.fill_between(steps, lows, highs, color=style["color"], alpha=0.15, lw=0)
    return True


def _loss_curve(run: SweepRun) -> Curve:
    loss = run.curves.get("train/loss_step") or run.curves.get("train/loss", [])
    return list(zip([s for s, _ in loss], smooth([v for _, v in loss], SMOOTHING), strict=True))


def curves(points: Sequence[Point], quality: Quality, path: Path) -> Path | None:
    """Validation quality and training loss per step: each point's mean over seeds, banded."""
    drawn = [p for p in points if any(r.curves for r in p.runs)]
    if not drawn:
        return None
    colors = point_colors(points)
    fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    scale = 100 if quality.percent else 1
    any_loss = False
    for point in drawn:
        style = {"color": colors[point.label], "label": point.label}
        style["lw"] = 2 if point.is_full else 1.3
        val = [r.curves[quality.val] for r in point.completed if r.curves.get(quality.val)]
        draw_band(ax_val, *mean_curve(val), scale, **style)
        loss = [c for c in map(_loss_curve, point.completed) if c]
        any_loss |= draw_band(ax_loss, *mean_curve(loss), 1.0, **style)
    unit = " (%)" if quality.percent else ""
    ax_val.set(
        title=f"Validation {quality.name} ({BAND})",
        xlabel="training step",
        ylabel=f"{quality.val}{unit}",
    )
    ax_loss.set(
        title=f"Training loss (EMA {SMOOTHING:g}; {BAND})",
        xlabel="training step",
        ylabel="train loss",
        yscale="log" if any_loss else "linear",
    )
    for ax in (ax_val, ax_loss):
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=8)
    return save_figure(fig, path)


def quality_vs_params(points: Sequence[Point], quality: Quality, path: Path) -> Path | None:
    """Test quality (mean, 95% CI bars) against trainable parameters; full FT drawn apart."""
    scored = [p for p in points if p.estimate(quality.test_value)]
    if not any(p.first.summary.trainable_params for p in scored):
        return None
    scale = 100 if quality.percent else 1
    fig, ax = plt.subplots(figsize=(7.5, 5))
    lora = [p for p in scored if p.is_adapter and p.first.summary.trainable_params]
    for i, point in enumerate(lora):
        est = point.estimate(quality.test_value)
        x, y = point.first.summary.trainable_params, scale * est.mean
        label = "LoRA points (bars: 95% CI over seeds)" if i == 0 else None
        ax.errorbar(
            [x], [y], yerr=[error_bar(est, scale)], fmt="o", color="C0", capsize=3, label=label
        )
        # labels alternate above and below, so neighbours at one height stay readable
        offset = (4, 5) if i % 2 == 0 else (4, -11)
        ax.annotate(point.label, (x, y), fontsize=7, xytext=offset, textcoords="offset points")
    for i, point in enumerate(p for p in scored if p.is_full and p.first.summary.trainable_params):
        est = point.estimate(quality.test_value)
        y, err = scale * est.mean, error_bar(est, scale)
        x = point.first.summary.trainable_params
        ax.errorbar(
            [x],
            [y],
            yerr=[err],
            fmt="*",
            ms=14,
            color=FULL_COLOR,
            capsize=3,
            zorder=3,
            label="full fine-tuning" if i == 0 else None,
        )
        ax.axhline(y, color=FULL_COLOR, ls="--", lw=0.8)
        if err:
            ax.axhspan(y - err, y + err, color=FULL_COLOR, alpha=0.07, lw=0)
    for point in (p for p in scored if p.untrained):
        # e.g. the pretrained base before fine-tuning: a reference level, it trained nothing
        y = scale * point.estimate(quality.test_value).mean
        ax.axhline(
            y, color=UNTRAINED_COLOR, ls=":", lw=1.2, label=f"{point.label} (not fine-tuned)"
        )
    unit = " (%)" if quality.percent else ""
    better = "higher" if quality.higher_is_better else "lower"
    ax.set(
        xscale="log",
        title=f"Test {quality.name} vs trainable parameters ({better} is better)",
        xlabel="trainable parameters (log scale)",
        ylabel=f"{quality.test}{unit}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def draw_bars(
    ax: plt.Axes,
    points: Sequence[Point],
    values: Sequence[float],
    colors: dict[str, str],
    errors: Sequence[float] | None = None,
) -> None:
    ax.bar(
        range(len(points)),
        values,
        color=[colors[p.label] for p in points],
        yerr=errors,
        capsize=3 if errors else 0,
    )
    ax.set_xticks(
        range(len(points)), [p.label for p in points], rotation=35, ha="right", fontsize=8
    )
    ax.grid(alpha=0.3, axis="y")


def learning_vs_forgetting(forgetting: Forgetting, quality: Quality, path: Path) -> Path | None:
    """Gain on the target against loss on the source: each run a dot, each point its mean."""
    gain, lost = forgetting.gain, forgetting.metric.change
    drawn = [p for p in forgetting.points if p.estimate(gain) and p.estimate(lost)]
    if not drawn:
        return None
    colors = point_colors(forgetting.points)
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for point in drawn:
        color = colors[point.label]
        runs = [r for r in point.completed if gain(r) is not None and lost(r) is not None]
        ax.scatter([lost(r) for r in runs], [gain(r) for r in runs], s=12, color=color, alpha=0.4)
        x, y = point.estimate(lost), point.estimate(gain)
        ax.errorbar(
            [x.mean],
            [y.mean],
            xerr=[error_bar(x)],
            yerr=[error_bar(y)],
            color=color,
            capsize=3,
            fmt="*" if point.is_full else "o",
            ms=12 if point.is_full else 6,
            label=point.label,
        )
    title = "Learning vs forgetting (dots: runs; markers: mean, bars: 95% CI over seeds)"
    return finish_forgetting_axes(fig, ax, forgetting, quality, title, path)


def finish_forgetting_axes(
    fig: plt.Figure, ax: plt.Axes, forgetting: Forgetting, quality: Quality, title: str, path: Path
) -> Path:
    """Axes of a learning-vs-forgetting figure: its labels, the zero line, grid and legend."""
    metric = forgetting.metric
    gain_unit = "points" if quality.percent else quality.name
    ax.set(
        title=title,
        xlabel=f"forgetting: {metric.name} lost on the source ({metric.unit}; left is better)",
        ylabel=f"learning: test {quality.name} gained on the target ({gain_unit})",
    )
    ax.title.set_fontsize(9)
    ax.axvline(0, color="gray", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


# cost: trainable parameters, step time and memory


def trainable_params(points: Sequence[Point], path: Path) -> Path | None:
    drawn = [p for p in points if p.completed and not p.untrained]
    drawn = [p for p in drawn if p.first.summary.trainable_params]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(drawn) + 2), 4.5))
    draw_bars(ax, drawn, [p.first.summary.trainable_params for p in drawn], point_colors(points))
    ax.set(
        yscale="log",
        title="Trainable parameters per point (log scale)",
        ylabel="trainable parameters",
    )
    return save_figure(fig, path)


def resources(points: Sequence[Point], speed: SpeedProbe | None, path: Path) -> Path | None:
    """The probe's step time and memory beside the per-run step time (labelled as such)."""
    drawn = [p for p in points if p.completed and not p.untrained]
    probed = [p for p in drawn if speed and speed.get(p)]
    per_run = [p for p in drawn if p.estimate(step_time)]
    if not probed and not per_run:
        return None
    colors = point_colors(points)
    panels: list[Callable[[plt.Axes], None]] = []
    if probed:
        panels.append(lambda ax: _probe_time(ax, probed, speed, colors))
    if per_run:
        panels.append(lambda ax: _per_run_time(ax, per_run, colors))
    if probed:
        panels.append(lambda ax: _probe_memory(ax, probed, speed))
    width = max(5 * len(panels), 1.6 * len(drawn) + 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.8), squeeze=False)
    for ax, draw in zip(axes[0], panels, strict=True):
        draw(ax)
    return save_figure(fig, path)


def _probe_time(ax: plt.Axes, points: list[Point], speed: SpeedProbe, colors: dict) -> None:
    draw_bars(ax, points, [speed.get(p).step_ms for p in points], colors)
    ax.scatter(
        range(len(points)),
        [speed.get(p).median_ms for p in points],
        marker="_",
        s=200,
        color="black",
        zorder=3,
        label="median step",
    )
    ax.set(
        title="Training step, interleaved probe\n(bars: fastest step; dash: median)",
        ylabel="ms per step",
    )
    ax.legend(fontsize=7)


def _per_run_time(ax: plt.Axes, points: list[Point], colors: dict) -> None:
    ests = [p.estimate(step_time) for p in points]
    draw_bars(ax, points, [e.mean for e in ests], colors, [error_bar(e) for e in ests])
    ax.set(
        title="Training step, per run, while each trained\n(machine load included; bars: 95% CI)",
        ylabel="ms per step",
    )


def _probe_memory(ax: plt.Axes, points: list[Point], speed: SpeedProbe) -> None:
    parts = ("parameters", "gradients", "optimizer_state", "activations")
    bottom = [0.0] * len(points)
    for i, part in enumerate(parts):
        values = [getattr(speed.get(p), part) / 2**20 for p in points]
        ax.bar(
            range(len(points)), values, bottom=bottom, color=f"C{i}", label=part.replace("_", " ")
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(
        range(len(points)), [p.label for p in points], rotation=35, ha="right", fontsize=8
    )
    ax.set(title="Training step memory, probe (exact tensor bytes)", ylabel="MiB")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)


# the rank analysis

PROJECTIONS = ("q", "k", "v", "o")


def spectra(analysis: RankAnalysis, kind: str, path: Path) -> Path | None:
    """Normalised singular values of the updates of `kind` (full / lora) runs, per projection."""
    labels = [label for label, k in analysis.kinds.items() if k == kind]
    if not labels:
        return None
    modules = {m for label in labels for m in analysis.ranks[label]}
    panels = [p for p in PROJECTIONS if any(projection_of(m) == p for m in modules)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, projection in zip(axes[0], panels, strict=True):
        for i, label in enumerate(labels):
            modules = [m for m in analysis.ranks[label] if projection_of(m) == projection]
            for k, module in enumerate(modules):
                s = analysis.ranks[label][module].singular_values
                if not float(s[0]) > 0:
                    continue  # an untouched module: nothing to draw
                # a rank-r update has exactly r non-zero values; the rest is round-off
                s = s[s > 1e-9 * s[0]] / s[0]
                color = cmap(k / max(1, len(modules) - 1)) if kind == "full" else f"C{i}"
                name = module if kind == "full" else (label if k == 0 else None)
                marker = "o" if len(s) < 3 else None  # a rank-1 update is a single point
                ax.plot(range(1, len(s) + 1), s, color=color, label=name, marker=marker, ms=3)
        ax.set(title=f"{projection}_proj updates", xlabel="singular value index", yscale="log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("singular value / largest")
    axes[0][0].legend(fontsize=7)
    what = (
        "full fine-tuning: W_finetuned - W_pretrained"
        if kind == "full"
        else "adapters: merged W - W_pretrained, for LoRA scaling * B @ A"
    )
    fig.suptitle(f"Singular value spectra of the weight updates ({what})")
    return save_figure(fig, path)


def subspace(comparison: SubspaceComparison | None, path: Path) -> Path | None:
    """phi(i, j) heat maps between the top directions of two adapters, one per module."""
    if comparison is None:
        return None
    modules = list(comparison.grids)[:8]
    fig, axes = plt.subplots(
        1,
        len(modules),
        figsize=(3.2 * len(modules) + 1.2, 3.6),
        squeeze=False,
        layout="constrained",
    )
    small, large = comparison.small_rank, comparison.large_rank
    for ax, module in zip(axes[0], modules, strict=True):
        grid = comparison.grids[module].to(torch.float32)
        extent = (0.5, grid.shape[1] + 0.5, 0.5, grid.shape[0] + 0.5)
        image = ax.imshow(
            grid, vmin=0, vmax=1, cmap="magma", aspect="auto", origin="lower", extent=extent
        )
        ax.set(title=module, xlabel=f"j: top directions, r={large}")
    axes[0][0].set_ylabel(f"i: top directions, r={small}")
    fig.colorbar(image, ax=axes[0].tolist(), label="phi(i, j)")
    fig.suptitle(
        f"Subspace similarity of the {comparison.small} and {comparison.large} adapters "
        "(1 = same directions, 0 = orthogonal)"
    )
    return save_figure(fig, path)


# learning rates


def rate_curves(searches: Sequence[RateSearch], quality: Quality, path: Path) -> Path | None:
    """Validation (which chose the rate) and test quality against the learning rate."""
    if not searches:
        return None
    scale = 100 if quality.percent else 1
    colors = point_colors([s.point for s in searches])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    panels = (("validation (chooses the rate)", quality.best_val), ("test", quality.test_value))
    for ax, (title, value) in zip(axes, panels, strict=True):
        for search in searches:
            color = colors[search.label]
            scored = [(s, s.point.estimate(value)) for s in search.settings]
            scored = [(s, est) for s, est in scored if est is not None]
            rates, ests = [s.lr for s, _ in scored], [est for _, est in scored]
            draw_band(ax, rates, ests, scale, color=color, label=search.label)
            chosen = next((est for s, est in scored if s is search.chosen), None)
            if chosen is not None:
                ax.plot([search.chosen.lr], [scale * chosen.mean], "*", ms=14, color=color)
        ax.set_xscale("log")
        ax.set(title=title, xlabel="learning rate (log scale)")
        ax.grid(alpha=0.3, which="both")
    unit = " (%)" if quality.percent else ""
    axes[0].set_ylabel(f"{quality.name}{unit}, mean over seeds (band: 95% CI)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{quality.name} against the learning rate (star: the rate chosen on validation)")
    return save_figure(fig, path)


def forgetting_frontier(
    searches: Sequence[RateSearch], forgetting: Forgetting, quality: Quality, path: Path
) -> Path | None:
    """Gain on the target against loss on the source at every rate of every point's grid."""
    gain, lost = forgetting.gain, forgetting.metric.change
    colors = point_colors([s.point for s in searches])
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    drawn = False
    for search in searches:
        dots = []
        for setting in search.settings:
            x, y = setting.point.estimate(lost), setting.point.estimate(gain)
            if x is not None and y is not None:
                dots.append((setting, x, y))
        if not dots:
            continue
        drawn = True
        color = colors[search.label]
        ax.plot([x.mean for _, x, _ in dots], [y.mean for _, _, y in dots], "-", color=color)
        for setting, x, y in dots:
            chosen = setting is search.chosen
            # means only: 3 seeds' intervals of both axes would hide the frontier's shape
            ax.plot(
                [x.mean],
                [y.mean],
                "*" if chosen else "o",
                ms=13 if chosen else 5,
                color=color,
                label=search.label if chosen else None,
            )
            ax.annotate(
                f"{setting.lr:g}",
                (x.mean, y.mean),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    if not drawn:
        plt.close(fig)
        return None
    title = "Learning vs forgetting at every learning rate (means over seeds; star: chosen on validation)"
    return finish_forgetting_axes(fig, ax, forgetting, quality, title, path)

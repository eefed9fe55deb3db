"""The report's figures of points: matplotlib PNGs with titles, axis labels and legends.

A point is drawn as the mean over its seeds with its 95% confidence interval: error bars on
a marker, a band around a curve. Each function draws one figure, writes it to `path` and
returns the path, or returns None when the sweep has nothing to draw. The cost figures are
in `cost_plots.py`, the rank analysis's in `rank_plots.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in tests and on servers
import matplotlib.pyplot as plt  # noqa: E402

from loralab.report.collect import Curve, SweepRun  # noqa: E402
from loralab.report.forgetting import Forgetting  # noqa: E402
from loralab.report.points import Point  # noqa: E402
from loralab.report.quality import Quality  # noqa: E402
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

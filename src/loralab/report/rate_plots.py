"""The report's learning-rate figures: quality against the rate, and the forgetting frontier.

One curve per point through the rates of its grid (log x), the mean over seeds with its 95%
band; a star marks the rate chosen on validation. The frontier draws, for every rate, what a
point gained on its target against what it lost on its source, as Biderman et al. (2024)
compare LoRA with full fine-tuning: one line per point, rates in order along it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loralab.report.forgetting import Forgetting
from loralab.report.plots import (
    draw_band,
    finish_forgetting_axes,
    plt,
    point_colors,
    save_figure,
)
from loralab.report.quality import Quality
from loralab.report.rates import RateSearch


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

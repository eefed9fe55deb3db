"""The report's cost figures: trainable parameters per point, and step time and memory, the
interleaved probe's beside the per-run figures (labelled as such)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from loralab.report.collect import SweepRun
from loralab.report.plots import draw_bars, error_bar, point_colors, save_figure
from loralab.report.points import Point
from loralab.report.speed import SpeedProbe


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
    per_run = [p for p in drawn if p.estimate(_step_time)]
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


def _step_time(run: SweepRun) -> float | None:
    return run.summary.step_time_ms


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
    ests = [p.estimate(_step_time) for p in points]
    draw_bars(ax, points, [e.mean for e in ests], colors, [error_bar(e) for e in ests])
    ax.set(
        title="Training step, per run, one run after another\n(machine load included; "
        "bars: 95% CI)",
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

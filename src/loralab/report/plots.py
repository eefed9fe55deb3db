"""The report's figures: matplotlib PNGs with titles, axis labels and legends.

Each function draws one figure from collected runs (or the rank analysis), writes it to
`path` and returns the path, or returns None when the sweep has nothing to draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in tests and on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from loralab.analysis import projection_of  # noqa: E402
from loralab.report.collect import Run  # noqa: E402
from loralab.report.quality import Quality  # noqa: E402
from loralab.report.ranks import RankAnalysis, SubspaceComparison  # noqa: E402
from loralab.run.summary import RunSummary  # noqa: E402

FULL_COLOR = "black"
# runs that trained nothing, e.g. the pretrained base evaluated as a reference
UNTRAINED_COLOR = "gray"
PROJECTIONS = ("q", "k", "v", "o")
# how much the noisy per-step training loss is smoothed
SMOOTHING = 0.6


def _colors(runs: Sequence[Run]) -> dict[str, str]:
    """One colour per run, the same in every figure; full fine-tuning is black."""
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    colors, i = {}, 0
    for run in runs:
        if run.is_full:
            colors[run.job] = FULL_COLOR
        elif run.untrained:
            colors[run.job] = UNTRAINED_COLOR
        else:
            colors[run.job] = matplotlib.colors.to_hex(palette[i % len(palette)])
            i += 1
    return colors


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """An exponential moving average, as TensorBoard's smoothing slider draws it."""
    out, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        out.append(last)
    return out


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves(runs: Sequence[Run], quality: Quality, path: Path) -> Path | None:
    """Validation quality per epoch and training loss per step, one line per run."""
    drawn = [r for r in runs if r.curves]
    if not drawn:
        return None
    colors = _colors(runs)
    fig, (ax_val, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in drawn:
        style = {"color": colors[run.job], "label": run.name, "lw": 2 if run.is_full else 1.3}
        val = run.curves.get(quality.val, [])
        if val:
            scale = 100 if quality.percent else 1
            ax_val.plot([s for s, _ in val], [v * scale for _, v in val], marker="o", ms=3, **style)
        loss = run.curves.get("train/loss_step") or run.curves.get("train/loss", [])
        if loss:
            # markers too when there are few points (a short run logs a handful)
            marker = "o" if len(loss) < 20 else None
            values = smooth([v for _, v in loss], SMOOTHING)
            ax_loss.plot([s for s, _ in loss], values, marker=marker, ms=3, **style)
    unit = " (%)" if quality.percent else ""
    ax_val.set(
        title=f"Validation {quality.name}", xlabel="training step", ylabel=f"{quality.val}{unit}"
    )
    ax_loss.set(
        title=f"Training loss (smoothed, EMA {SMOOTHING:g})",
        xlabel="training step",
        ylabel="train loss",
        yscale="log",
    )
    for ax in (ax_val, ax_loss):
        ax.grid(alpha=0.3)
    ax_val.legend(fontsize=8)
    return _save(fig, path)


def quality_vs_params(runs: Sequence[Run], quality: Quality, path: Path) -> Path | None:
    """Test quality against trainable parameters (log x); full fine-tuning drawn apart."""
    scored = [r for r in runs if r.completed and quality.test_value(r) is not None]
    if not any(r.summary.trainable_params for r in scored):
        return None
    scale = 100 if quality.percent else 1
    fig, ax = plt.subplots(figsize=(7.5, 5))
    lora = [r for r in scored if r.is_adapter and r.summary.trainable_params]
    if lora:
        xs = [r.summary.trainable_params for r in lora]
        ys = [quality.test_value(r) * scale for r in lora]
        ax.scatter(xs, ys, s=40, label="LoRA runs")
        for i, (run, x, y) in enumerate(zip(lora, xs, ys, strict=True)):
            # labels alternate above and below, so neighbours at one height stay readable
            offset = (4, 5) if i % 2 == 0 else (4, -11)
            ax.annotate(run.name, (x, y), fontsize=7, xytext=offset, textcoords="offset points")
    for i, run in enumerate(r for r in scored if r.is_full and r.summary.trainable_params):
        y = quality.test_value(run) * scale
        label = "full fine-tuning" if i == 0 else None
        star = {"marker": "*", "s": 220, "color": FULL_COLOR, "zorder": 3}
        ax.scatter([run.summary.trainable_params], [y], label=label, **star)
        ax.axhline(y, color=FULL_COLOR, ls="--", lw=0.8)
    for run in (r for r in scored if r.untrained):
        # e.g. the pretrained base before fine-tuning: a reference level, it trained nothing
        y = quality.test_value(run) * scale
        ax.axhline(y, color=UNTRAINED_COLOR, ls=":", lw=1.2, label=f"{run.name} (not fine-tuned)")
    unit = " (%)" if quality.percent else ""
    better = "higher" if quality.higher_is_better else "lower"
    ax.set(
        xscale="log",
        title=f"Test {quality.name} vs trainable parameters ({better} is better)",
        xlabel="trainable parameters (log scale)",
        ylabel=f"{quality.test}{unit}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def _bars(ax: plt.Axes, runs: Sequence[Run], values: Sequence[float], colors: dict) -> None:
    ax.bar(range(len(runs)), values, color=[colors[r.job] for r in runs])
    ax.set_xticks(range(len(runs)), [r.name for r in runs], rotation=35, ha="right", fontsize=8)
    ax.grid(alpha=0.3, axis="y")


def trainable_params(runs: Sequence[Run], path: Path) -> Path | None:
    drawn = [r for r in runs if r.completed and not r.untrained and r.summary.trainable_params]
    if not drawn:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(drawn) + 2), 4.5))
    _bars(ax, drawn, [r.summary.trainable_params for r in drawn], _colors(runs))
    ax.set(
        yscale="log",
        title="Trainable parameters per run (log scale)",
        ylabel="trainable parameters",
    )
    return _save(fig, path)


def resources(runs: Sequence[Run], path: Path) -> Path | None:
    """Peak memory, train state (weights + gradients + optimizer state) and step time."""
    panels: list[tuple[Callable[[RunSummary], float | None], str, str]] = [
        (lambda s: s.peak_memory_mib, "Peak memory during training", "MiB"),
        (lambda s: s.train_state_mib, "Weights + gradients + optimizer state", "MiB"),
        (lambda s: s.step_time_ms, "Mean training step time", "ms per step"),
    ]
    drawn = [r for r in runs if r.completed and any(key(r.summary) for key, _, _ in panels)]
    if not drawn:
        return None
    panels = [panel for panel in panels if any(panel[0](r.summary) for r in drawn)]
    colors = _colors(runs)
    width = max(5 * len(panels), 1.6 * len(drawn) + 2)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.5), squeeze=False)
    for ax, (key, title, unit) in zip(axes[0], panels, strict=True):
        _bars(ax, drawn, [key(r.summary) or 0 for r in drawn], colors)
        ax.set(title=title, ylabel=unit)
    return _save(fig, path)


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
    return _save(fig, path)


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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

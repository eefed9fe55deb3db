"""The rank analysis's figures: the spectra of the weight updates and the subspace similarity
of two adapters. Each writes one PNG to `path` and returns it, or None if there is nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in tests and on servers
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from loralab.analysis import projection_of  # noqa: E402
from loralab.report.plots import save_figure  # noqa: E402
from loralab.report.ranks import RankAnalysis, SubspaceComparison  # noqa: E402

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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

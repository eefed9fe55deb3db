"""Is a weight update low-rank? Singular values, energy ranks and subspace similarity.

The LoRA paper's premise is that fine-tuning changes a weight matrix W by a delta W of low
"intrinsic rank". These functions measure that on any delta W (full fine-tuning's
W_finetuned - W_pretrained, or LoRA's scaling * B @ A).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# the rank up to which an update's spectrum is read off a sketch of its range (LoRA's ranks)
SKETCH_RANK = 64
# the sketch holds the whole update when what it misses is round-off of float64
SKETCH_TOLERANCE = 1e-10


def singular_values(delta: Tensor) -> Tensor:
    """Singular values of a 2-D update, largest first, in float64 for stable small values.

    A low-rank update (a LoRA adapter's) is read off its range (`low_rank_singular_values`):
    the same values, at a fraction of a full decomposition's cost; any other update, or one
    whose rank is above the sketch's, gets the full decomposition.
    """
    if delta.dim() != 2:
        raise ValueError(f"a weight update must be 2-D, got shape {tuple(delta.shape)}")
    delta = delta.detach().to(torch.float64).cpu()
    values = low_rank_singular_values(delta)
    return values if values is not None else torch.linalg.svdvals(delta)


def low_rank_singular_values(delta: Tensor, rank: int = SKETCH_RANK) -> Tensor | None:
    """The singular values of a float64 `delta` of rank below `rank`, or None if its rank may
    be higher (or it is too small for a sketch to save anything).

    Q, an orthonormal basis of delta @ Omega (Omega: `rank` seeded Gaussian columns), spans
    delta's whole range when its rank is below `rank`; then delta = Q (Q^T delta) and the
    singular values of the small Q^T delta are delta's, the rest being zeros. That is checked,
    not assumed: what Q misses must be round-off of delta, else the answer is None.
    """
    rows, cols = delta.shape
    if min(rows, cols) <= 2 * rank:
        return None
    omega = torch.randn(cols, rank, dtype=delta.dtype, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(delta @ omega)
    core = q.T @ delta
    scale = torch.linalg.matrix_norm(delta)
    if not float(torch.linalg.matrix_norm(delta - q @ core)) <= SKETCH_TOLERANCE * float(scale):
        return None
    values = torch.linalg.svdvals(core)
    return torch.cat([values, values.new_zeros(min(rows, cols) - len(values))])


def energy_rank(values: Tensor, fraction: float) -> int:
    """The smallest k whose top-k singular values hold `fraction` of the energy sum(s_i^2).

    Energy is the squared Frobenius norm, so rank k keeps that fraction of ||delta W||_F^2.
    An all-zero update has rank 0.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    energy = values.to(torch.float64) ** 2
    total = float(energy.sum())
    if total == 0.0:
        return 0
    cumulative = torch.cumsum(energy, dim=0) / total
    # a small tolerance, so an exact rank-k update is not counted as k+1 by round-off
    return int(torch.searchsorted(cumulative, torch.tensor(fraction - 1e-12)).item()) + 1


@dataclass(frozen=True)
class UpdateRank:
    """The rank profile of one update: its shape, spectrum and 90% / 99% energy ranks."""

    shape: tuple[int, int]
    singular_values: Tensor
    rank90: int
    rank99: int

    @property
    def full_rank(self) -> int:
        return min(self.shape)


def analyse_update(delta: Tensor) -> UpdateRank:
    values = singular_values(delta)
    return UpdateRank(
        shape=(int(delta.shape[0]), int(delta.shape[1])),
        singular_values=values,
        rank90=energy_rank(values, 0.90),
        rank99=energy_rank(values, 0.99),
    )


def top_input_directions(delta: Tensor, k: int) -> Tensor:
    """The top-k right singular vectors of delta W (in x k): the input directions it acts on.

    For a LoRA update B @ A they span A's row space, the space the LoRA paper compares.
    """
    _, _, vh = torch.linalg.svd(delta.detach().to(torch.float64).cpu(), full_matrices=False)
    return vh[:k].T


def subspace_similarity(u: Tensor, v: Tensor, i: int, j: int) -> float:
    """phi(i, j) = ||U_i^T V_j||_F^2 / min(i, j) (Hu et al., 2021, section 7.2).

    U_i and V_j are the first i and j columns of two orthonormal bases; 1 when one span
    holds the other, 0 when they are orthogonal. Random subspaces of a d-dim space give
    about max(i, j) / d.
    """
    if not (1 <= i <= u.shape[1] and 1 <= j <= v.shape[1]):
        raise ValueError(f"i={i}, j={j} must be within the {u.shape[1]} and {v.shape[1]} columns")
    overlap = u[:, :i].T.to(torch.float64) @ v[:, :j].to(torch.float64)
    return float((overlap**2).sum()) / min(i, j)


def similarity_grid(delta_a: Tensor, delta_b: Tensor, max_i: int, max_j: int) -> Tensor:
    """phi(i, j) for i = 1..max_i (from delta_a), j = 1..max_j (from delta_b): [max_i, max_j]."""
    u = top_input_directions(delta_a, max_i)
    v = top_input_directions(delta_b, max_j)
    grid = torch.empty(u.shape[1], v.shape[1], dtype=torch.float64)
    for i in range(1, u.shape[1] + 1):
        for j in range(1, v.shape[1] + 1):
            grid[i - 1, j - 1] = subspace_similarity(u, v, i, j)
    return grid

"""The report's rank analysis: the energy ranks of every analysable run's weight updates,
and the subspace similarity of a small-rank and a large-rank LoRA adapter."""

from __future__ import annotations

import csv
import logging
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from loralab.analysis import (
    UpdateRank,
    analyse_update,
    full_finetuning_updates,
    lora_updates,
    similarity_grid,
)
from loralab.io import atomic_path
from loralab.models.projections import PROJECTION_ALIASES, canonical_projection
from loralab.report.collect import SweepRun
from loralab.run.builder import read_checkpoint
from loralab.run.summary import ADAPTER_FILE

log = logging.getLogger(__name__)

# the LoRA paper compares r=8 with r=64; our rank_sweep stops at 32
PREFERRED_PAIR = (8, 32)


@dataclass
class SubspaceComparison:
    """phi(i, j) grids between the adapters of two LoRA runs, per module both adapt."""

    small: str
    large: str
    small_rank: int
    large_rank: int
    grids: dict[str, Tensor]
    input_dim: dict[str, int]


@dataclass
class RankAnalysis:
    # run label -> module -> rank profile of its update
    ranks: dict[str, dict[str, UpdateRank]] = field(default_factory=dict)
    # run label -> "full" / "lora"
    kinds: dict[str, str] = field(default_factory=dict)
    subspace: SubspaceComparison | None = None
    # full fine-tuning runs with no checkpoint or base checkpoint to diff (no update to analyse)
    undiffed: list[str] = field(default_factory=list)


RANKS_CSV = "ranks.csv"


def module_kind(module: str) -> str:
    """q, k, v, o, gate, up, down (any model's names); else the module path without layer numbers."""
    return canonical_projection(module) or re.sub(r"\.\d+\.", ".*.", module)


@dataclass(frozen=True)
class KindRanks:
    """A run's updates of one module kind (e.g. every q projection): their energy ranks."""

    modules: int
    full_rank: int  # the largest matrix-rank limit of the kind's updates
    rank90: list[int]
    rank99: list[int]


def ranks_by_kind(ranks: dict[str, UpdateRank]) -> dict[str, KindRanks]:
    """module -> rank profile, summarised per module kind (projections in q, k, v, o order)."""
    groups: dict[str, list[UpdateRank]] = {}
    for module, profile in sorted(ranks.items()):
        groups.setdefault(module_kind(module), []).append(profile)
    order = list(PROJECTION_ALIASES)  # q, k, v, qkv, o, gate, up, down; other kinds after
    kinds = sorted(groups, key=lambda k: order.index(k) if k in order else len(order))
    return {
        kind: KindRanks(
            len(ps), max(p.full_rank for p in ps), [p.rank90 for p in ps], [p.rank99 for p in ps]
        )
        for kind, ps in ((k, groups[k]) for k in kinds)
    }


def spread(values: Sequence[int]) -> str:
    """'14' for one value, '14.5 (7-50)': the median and range over layers."""
    if len(values) == 1 or min(values) == max(values):
        return str(values[0])
    return f"{statistics.median(values):g} ({min(values)}-{max(values)})"


def write_ranks_csv(analysis: RankAnalysis, path: Path) -> Path | None:
    """Every analysed module of every point: its shape limit and 90% / 99% energy ranks."""
    if not analysis.ranks:
        return None
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["point", "kind", "module", "full_rank", "rank90", "rank99"])
        for label, ranks in analysis.ranks.items():
            for module, p in sorted(ranks.items()):
                writer.writerow(
                    [label, module_kind(module), module, p.full_rank, p.rank90, p.rank99]
                )
    return path


def run_updates(run: SweepRun) -> dict[str, Tensor] | None:
    """The weight updates of a completed run, or None (with a logged reason) if unreadable."""
    try:
        if run.is_full:
            ckpt, base = run.summary.checkpoint_path, run.summary.base_checkpoint
            if not ckpt or not base or not Path(ckpt).is_file() or not Path(base).is_file():
                return None
            return full_finetuning_updates(read_checkpoint(ckpt)["state_dict"], base)
        adapter_file = run.dir / ADAPTER_FILE
        if not run.is_adapter or not adapter_file.is_file():
            return None
        return lora_updates(adapter_file, run.summary.base_checkpoint)
    except Exception as error:  # noqa: BLE001 - one unreadable run must not sink the report
        log.warning("rank analysis skips %s: %s", run.dir, error)
        return None


def unique_labels(runs: Sequence[SweepRun]) -> dict[str, SweepRun]:
    """SweepRun name -> run; a name seen twice (e.g. a seed grid) gets its job number appended."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    return {(run.name if counts[run.name] == 1 else f"{run.name}#{run.job}"): run for run in runs}


def analyse_runs(runs: Sequence[SweepRun]) -> RankAnalysis:
    """Energy ranks of every completed run's updates; subspace similarity of one LoRA pair."""
    analysis = RankAnalysis()
    updates: dict[str, dict[str, Tensor]] = {}
    for label, run in unique_labels([r for r in runs if r.completed]).items():
        deltas = run_updates(run)
        if not deltas:
            if run.is_full:
                analysis.undiffed.append(label)
            continue
        updates[label] = deltas
        analysis.kinds[label] = "full" if run.is_full else "lora"
        analysis.ranks[label] = {module: analyse_update(d) for module, d in deltas.items()}
    analysis.subspace = compare_subspaces(runs, updates)
    return analysis


def pick_pair(ranked: dict[str, int]) -> tuple[str, str] | None:
    """r=8 and r=32 if both ran, else the smallest and the largest rank."""
    by_rank = {rank: label for label, rank in reversed(list(ranked.items()))}
    small, large = PREFERRED_PAIR
    if small in by_rank and large in by_rank:
        return by_rank[small], by_rank[large]
    if len(by_rank) < 2:
        return None
    return by_rank[min(by_rank)], by_rank[max(by_rank)]


def compare_subspaces(
    runs: Sequence[SweepRun], updates: dict[str, dict[str, Tensor]]
) -> SubspaceComparison | None:
    labelled = unique_labels([r for r in runs if r.completed])
    ranked = {
        label: int(labelled[label].summary.rank)
        for label in updates
        if labelled[label].is_adapter and labelled[label].summary.rank is not None
    }
    pair = pick_pair(ranked)
    if pair is None:
        return None
    small, large = pair
    modules = sorted(updates[small].keys() & updates[large].keys())
    if not modules:
        return None
    r_small, r_large = ranked[small], ranked[large]
    return SubspaceComparison(
        small=small,
        large=large,
        small_rank=r_small,
        large_rank=r_large,
        grids={
            m: similarity_grid(updates[small][m], updates[large][m], r_small, r_large)
            for m in modules
        },
        input_dim={m: int(updates[small][m].shape[1]) for m in modules},
    )

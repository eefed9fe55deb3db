"""A sweeper over named points of the grid, so unlike variants share one sweep folder.

Hydra's basic sweeper takes the cartesian product of the values of each key. Full
fine-tuning and LoRA at six ranks is not such a product: full fine-tuning has no rank. So
an experiment lists its variants as named points, each a list of overrides

    hydra:
      sweeper:
        points:
          full: [adapter=full, adapter.lr=1e-3]
          r8: [adapter=lora, adapter.rank=8, adapter.alpha=16]

and every point is combined with every combination of the command-line grid
(`-m experiment=rank_sweep seed=1,2` gives 2 runs per point). A point's overrides come
first, so a command-line value of the same key wins.

`seeds: [1, 2, 3]` beside the points repeats the whole sweep once per seed, seed by seed
(every point of the first seed, then of the next), so a sweep stopped early still holds
complete comparisons. A `seed` on the command line (`seed=7`, `seed=1,2`) replaces them.

A fair comparison tunes each method's learning rate. `lrs: {full: [1e-4, 1e-3]}` gives a
point a grid of learning rates, and `lr_factors: [0.3, 1, 3]` one around the rate the point
names itself (its own `adapter.lr`, times each factor); a point with `lrs` takes those. Every
rate is one more job of the point, under the same data, seeds and steps, its `adapter.lr=...`
appended after the point's own (the report reads the point's hand-picked rate from the first
and the run's from the last, then chooses each point's rate on validation). An `adapter.lr`
on the command line replaces the grids, as a command-line seed replaces the seeds.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Dict, List, Optional  # noqa: UP035 - OmegaConf reads these annotations

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from loralab.compat import basic_sweeper

BasicSweeper = basic_sweeper()

log = logging.getLogger(__name__)
SEED_KEY = "seed"
LR_KEY = "adapter.lr"


@dataclass
class PointsSweeperConf:
    _target_: str = "hydra_plugins.loralab_sweeper.points_sweeper.PointsSweeper"
    # jobs handed to the launcher at once (null = all)
    max_batch_size: Optional[int] = None  # noqa: UP045
    # extra grid values, as in the basic sweeper: {key: "v1,v2"}
    params: Optional[Dict[str, str]] = None  # noqa: UP006, UP045
    # point name -> its overrides, e.g. {full: [adapter=full]}; empty = the plain grid
    points: Dict[str, List[str]] = field(default_factory=dict)  # noqa: UP006
    # run only these points, e.g. hydra.sweeper.only=[full,r8]; null = all
    only: Optional[List[str]] = None  # noqa: UP006, UP045
    # repeat every job once per seed (seed=<s>); a seed on the command line replaces them
    seeds: Optional[List[int]] = None  # noqa: UP006, UP045
    # point name -> its learning-rate grid, e.g. {full: [1e-4, 3e-4, 1e-3]}
    lrs: Dict[str, List[float]] = field(default_factory=dict)  # noqa: UP006
    # every other point's own adapter.lr times each factor, e.g. [0.3, 1, 3]; null = none
    lr_factors: Optional[List[float]] = None  # noqa: UP006, UP045


ConfigStore.instance().store(
    group="hydra/sweeper", name="points", node=PointsSweeperConf, provider="loralab"
)


def select_points(
    points: Mapping[str, Sequence[str]], only: Sequence[str] | None
) -> dict[str, list[str]]:
    """The points to run, in the experiment's order; a name in `only` must exist."""
    if only is None:
        return {name: list(overrides) for name, overrides in points.items()}
    unknown = [name for name in only if name not in points]
    if unknown:
        raise HydraException(
            f"hydra.sweeper.only names {unknown}, which the experiment does not define; "
            f"pick from {list(points)}."
        )
    return {name: list(points[name]) for name in points if name in only}


def expand_points(
    points: Mapping[str, Sequence[str]], grid: Sequence[Sequence[str]]
) -> list[list[str]]:
    """Every point times every grid combination: the point's overrides, then the grid's."""
    if not points:
        return [list(combination) for combination in grid]
    return [[*overrides, *combination] for overrides in points.values() for combination in grid]


def own_rate(overrides: Sequence[str]) -> float | None:
    """The learning rate a point names itself: the last `adapter.lr=<number>` of its overrides."""
    rates = [o.partition("=")[2] for o in overrides if o.partition("=")[0].lstrip("+") == LR_KEY]
    try:
        return float(rates[-1]) if rates else None
    except ValueError:  # an interpolation or a sweep: not a number to multiply
        return None


def rate_grids(
    points: Mapping[str, Sequence[str]],
    lrs: Mapping[str, Sequence[float]],
    factors: Sequence[float] | None,
) -> dict[str, list[float]]:
    """point -> its learning rates: its `lrs`, else its own rate times `factors`, else none.

    `lrs` may name only points of the experiment (those `only` left out are skipped).
    """
    unknown = [name for name in lrs if name not in points]
    if unknown:
        raise HydraException(
            f"hydra.sweeper.lrs names {unknown}, which the experiment does not define; "
            f"pick from {list(points)}."
        )
    grids = {}
    for name, overrides in points.items():
        if lrs.get(name):
            grids[name] = [float(lr) for lr in lrs[name]]
        elif factors and (rate := own_rate(overrides)) is not None:
            grids[name] = [float(f"{rate * factor:.6g}") for factor in factors]
    bad = {name: grid for name, grid in grids.items() if any(lr <= 0 for lr in grid)}
    if bad:
        raise HydraException(
            f"hydra.sweeper.lrs / lr_factors give learning rates <= 0 ({bad}); every rate of "
            "a grid must be positive."
        )
    return grids


def with_rate_grids(
    points: Mapping[str, Sequence[str]],
    grids: Mapping[str, Sequence[float]],
    command_line: Sequence[Override],
) -> dict[str, list[list[str]]]:
    """point -> its variants, one per rate of its grid (itself alone without a grid).

    An `adapter.lr` on the command line is the user's choice of rate: the grids step aside.
    """
    if any(o.key_or_group == LR_KEY for o in command_line):
        grids = {}
    return {
        name: [[*overrides, f"{LR_KEY}={lr:g}"] for lr in grids[name]]
        if grids.get(name)
        else [list(overrides)]
        for name, overrides in points.items()
    }


def repeat_over_seeds(
    jobs: Sequence[Sequence[str]], seeds: Sequence[int] | None, command_line: Sequence[Override]
) -> list[list[str]]:
    """Every job once per seed, seed by seed; unchanged without seeds or with a command-line seed."""
    if not seeds or any(o.key_or_group == SEED_KEY for o in command_line):
        return [list(job) for job in jobs]
    return [[*job, f"{SEED_KEY}={seed}"] for seed in seeds for job in jobs]


class PointsSweeper(BasicSweeper):
    """BasicSweeper whose jobs are `points x grid` instead of the grid alone."""

    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        points: Mapping[str, Sequence[str]] | None = None,
        only: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        lrs: Mapping[str, Sequence[float]] | None = None,
        lr_factors: Sequence[float] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        grids = rate_grids(points or {}, lrs or {}, lr_factors)
        self.points = select_points(points or {}, only)
        self.rate_grids = {name: grid for name, grid in grids.items() if name in self.points}
        self.seeds = list(seeds) if seeds else None

    def split_arguments(  # type: ignore[override] - BasicSweeper.sweep calls it on self
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """The jobs in batches of at most `max_batch_size`."""
        (grid,) = BasicSweeper.split_arguments(overrides, None)
        variants = with_rate_grids(self.points, self.rate_grids, overrides)
        settings = {f"{name} #{i}": v for name, vs in variants.items() for i, v in enumerate(vs)}
        jobs = expand_points(settings, grid)
        jobs_per_seed = len(jobs)
        jobs = repeat_over_seeds(jobs, self.seeds, overrides)
        for name, point in self.points.items():
            rates = (
                [v[-1].partition("=")[2] for v in variants[name]] if len(variants[name]) > 1 else []
            )
            log.info(
                "point %s: %s%s",
                name,
                " ".join(point),
                f" at lr {', '.join(rates)}" if rates else "",
            )
        log.info(
            "%d runs (%d points, %d with their rates, x %d grid combinations x %d seeds)",
            len(jobs),
            len(self.points),
            len(settings),
            len(grid),
            len(jobs) // max(jobs_per_seed, 1),
        )
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))

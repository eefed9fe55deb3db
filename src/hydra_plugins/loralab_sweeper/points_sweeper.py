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
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Dict, List, Optional  # noqa: UP035 - OmegaConf reads these annotations

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException

from loralab.run.compat import basic_sweeper

BasicSweeper = basic_sweeper()

log = logging.getLogger(__name__)
SEED_KEY = "seed"


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
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.points = select_points(points or {}, only)
        self.seeds = list(seeds) if seeds else None

    def split_arguments(  # type: ignore[override] - BasicSweeper.sweep calls it on self
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """The jobs in batches of at most `max_batch_size`."""
        (grid,) = BasicSweeper.split_arguments(overrides, None)
        jobs = expand_points(self.points, grid)
        jobs_per_seed = len(jobs)
        jobs = repeat_over_seeds(jobs, self.seeds, overrides)
        for name, point in self.points.items():
            log.info("point %s: %s", name, " ".join(point))
        log.info(
            "%d runs (%d points x %d grid combinations x %d seeds)",
            len(jobs),
            len(self.points),
            len(grid),
            len(jobs) // max(jobs_per_seed, 1),
        )
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))

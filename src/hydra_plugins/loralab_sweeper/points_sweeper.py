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


class PointsSweeper(BasicSweeper):
    """BasicSweeper whose jobs are `points x grid` instead of the grid alone."""

    def __init__(
        self,
        max_batch_size: int | None,
        params: dict[str, str] | None = None,
        points: Mapping[str, Sequence[str]] | None = None,
        only: Sequence[str] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.points = select_points(points or {}, only)

    def split_arguments(  # type: ignore[override] - BasicSweeper.sweep calls it on self
        self, overrides: list[Override], max_batch_size: int | None
    ) -> list[list[list[str]]]:
        """The jobs in batches of at most `max_batch_size`."""
        (grid,) = BasicSweeper.split_arguments(overrides, None)
        jobs = expand_points(self.points, grid)
        for name, point in self.points.items():
            log.info("point %s: %s", name, " ".join(point))
        log.info(
            "%d runs (%d points x %d grid combinations)", len(jobs), len(self.points), len(grid)
        )
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))

"""Points of a sweep: the runs that differ only in their seed, compared as one.

A sweep of 7 points over 3 seeds leaves 21 run folders. Two runs belong to one point when
their command-line overrides (Hydra's `.hydra/overrides.yaml`) agree on everything but
`seed`; a run folder without that record is a point of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from loralab.report.collect import SEED_KEY, SweepRun
from loralab.report.stats import Estimate, estimate

Value = Callable[[SweepRun], float | None]


@dataclass
class Point:
    """One point of the grid: its runs (one per seed), in job order."""

    label: str
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def completed(self) -> list[SweepRun]:
        return [r for r in self.runs if r.completed]

    @property
    def first(self) -> SweepRun:
        """The run that stands for the point (its settings, its rank analysis, the probe)."""
        return next(iter(self.completed), self.runs[0])

    @property
    def is_full(self) -> bool:
        return self.first.is_full

    @property
    def is_adapter(self) -> bool:
        return self.first.is_adapter

    @property
    def untrained(self) -> bool:
        return self.first.untrained

    @property
    def seeds(self) -> list[Hashable]:
        return [r.seed for r in self.runs]

    def values(self, value: Value) -> dict[Hashable, float]:
        """seed -> value of every completed run that has one (None: a run with no seed)."""
        out: dict[Hashable, float] = {}
        for run in self.completed:
            v = value(run)
            if v is not None:
                out[run.seed] = v
        return out

    def estimate(self, value: Value) -> Estimate | None:
        """Mean and 95% interval over the point's seeds; None if no run has the value."""
        values = list(self.values(value).values())
        return estimate(values) if values else None


def point_key(run: SweepRun, ignored: Sequence[str] = (SEED_KEY,)) -> tuple[tuple[str, str], ...]:
    """What a run is apart from its seed (or `ignored` keys): its other overrides, or its folder."""
    if not run.overrides:
        return (("folder", str(run.dir)),)
    return tuple(sorted((k, v) for k, v in run.overrides.items() if k not in ignored))


def group_points(runs: Sequence[SweepRun]) -> list[Point]:
    """Runs grouped into points, in the order each point's first run appears."""
    groups: dict[tuple, list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(point_key(run), []).append(run)
    labels = point_labels([(dict(key), members) for key, members in groups.items()])
    return [Point(label, members) for label, members in zip(labels, groups.values(), strict=True)]


def point_labels(groups: Sequence[tuple[dict[str, str], list[SweepRun]]]) -> list[str]:
    """Each point's run name; points sharing a name get the overrides that tell them apart."""
    names = [members[0].name for _, members in groups]
    labels = []
    for i, (overrides, members) in enumerate(groups):
        twins = [o for j, (o, _) in enumerate(groups) if j != i and names[j] == names[i]]
        differing = [f"{k}={v}" for k, v in overrides.items() if any(t.get(k) != v for t in twins)]
        if not twins:
            labels.append(names[i])
        else:
            labels.append(f"{names[i]} ({' '.join(differing) or 'job ' + members[0].job})")
    return labels

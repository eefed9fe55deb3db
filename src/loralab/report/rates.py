"""Each point at its own best learning rate: chosen on validation, then compared on test.

A fair comparison tunes every method's learning rate (LoRA's best is often ~10x full
fine-tuning's). The points sweeper runs a point once per rate of its grid (`hydra.sweeper.lrs`
or `lr_factors`), each rate over the same seeds. Here the runs of one point at all its rates
form a `RateSearch`: every rate's mean *validation* quality over its seeds picks the point's
rate, and only the runs at that rate stand for the point in the rest of the report (test
results, paired verdicts, forgetting, speed, ranks). Test never chooses anything. A rate
at either end of its grid is flagged: the best may lie beyond it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loralab.report.collect import SEED_KEY, SweepRun
from loralab.report.points import Point, point_key, point_labels
from loralab.report.quality import Quality
from loralab.report.stats import Estimate

# the override the sweeper varies; a point's own rate comes first, the grid's last
LR_KEY = "adapter.lr"


def run_rate(run: SweepRun) -> float | None:
    """The learning rate a run trained with: its summary's, else its last override's."""
    if isinstance(run.summary.lr, int | float):
        return float(run.summary.lr)
    return _number(run.overrides.get(LR_KEY))


def hand_picked_rate(run: SweepRun) -> float | None:
    """The rate the point names itself, before a grid's rate was appended after it."""
    rates = [value for key, value in run.override_list if key == LR_KEY]
    return _number(rates[0]) if len(rates) > 1 else None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


@dataclass
class Setting:
    """A point at one learning rate: its runs, one per seed."""

    lr: float
    point: Point


@dataclass
class RateSearch:
    """One point's learning-rate grid, every rate's runs, and the rate chosen on validation."""

    label: str
    quality: Quality
    settings: list[Setting]  # by rate, lowest first
    chosen: Setting | None = None  # None: no rate has a validation value
    hand_picked: Setting | None = None  # the point's own rate, when its grid holds it

    @property
    def rates(self) -> list[float]:
        return [s.lr for s in self.settings]

    def val(self, setting: Setting) -> Estimate | None:
        return setting.point.estimate(self.quality.best_val)

    def test(self, setting: Setting) -> Estimate | None:
        return setting.point.estimate(self.quality.test_value)

    @property
    def at_edge(self) -> str | None:
        """'lowest' / 'highest' when the chosen rate ends the grid (the best may lie beyond)."""
        if self.chosen is None:
            return None
        if self.chosen is self.settings[0]:
            return "lowest"
        if self.chosen is self.settings[-1]:
            return "highest"
        return None

    @property
    def point(self) -> Point:
        """The point as the rest of the report sees it: its runs at the chosen rate."""
        chosen = self.chosen or self.settings[0]
        return Point(self.label, list(chosen.point.runs))


@dataclass
class Selection:
    """The sweep's points (each at its chosen rate) and the searches that chose them."""

    points: list[Point]
    searches: list[RateSearch] = field(default_factory=list)
    # every point at its hand-picked rate, where each searched point's grid holds it
    hand_picked: list[Point] | None = None


def choose(settings: Sequence[Setting], quality: Quality) -> Setting | None:
    """The rate with the best mean validation quality over seeds (the lower rate on a tie)."""
    scored = [(s, s.point.estimate(quality.best_val)) for s in settings]
    scored = [(s, est) for s, est in scored if est is not None]
    if not scored:
        return None
    sign = 1 if quality.higher_is_better else -1
    best = max(sign * est.mean for _, est in scored)
    return next(s for s, est in scored if sign * est.mean == best)


def _by_rate(label: str, runs: Sequence[SweepRun]) -> list[Setting]:
    groups: dict[float | None, list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(run_rate(run), []).append(run)
    if None in groups or len(groups) < 2:
        return []
    return [Setting(lr, Point(f"{label} @ lr {lr:g}", groups[lr])) for lr in sorted(groups)]


def select_rates(runs: Sequence[SweepRun], quality: Quality) -> Selection:
    """Group runs into points; a point run at several rates is shown at its best on validation.

    A point whose rates have no validation value stays split into one point per rate.
    """
    families: dict[tuple, list[SweepRun]] = {}
    for run in runs:
        families.setdefault(point_key(run, (SEED_KEY, LR_KEY)), []).append(run)
    labels = point_labels([(dict(key), members) for key, members in families.items()])
    points, searches, hand_picked = [], [], []
    for label, members in zip(labels, families.values(), strict=True):
        settings = _by_rate(label, members)
        if not settings:
            points.append(Point(label, members))
            hand_picked.append(points[-1])
            continue
        own = hand_picked_rate(members[0])
        search = RateSearch(
            label,
            quality,
            settings,
            chosen=choose(settings, quality),
            hand_picked=next((s for s in settings if own is not None and s.lr == own), None),
        )
        searches.append(search)
        if search.chosen is None:
            points += [s.point for s in settings]
            continue
        points.append(search.point)
        if search.hand_picked is not None:
            hand_picked.append(Point(label, list(search.hand_picked.point.runs)))
    comparable = searches and all(s.chosen and s.hand_picked for s in searches)
    return Selection(points, searches, hand_picked if comparable else None)

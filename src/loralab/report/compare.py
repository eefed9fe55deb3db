"""Every point against full fine-tuning, paired by seed: the difference, its 95% interval,
and a verdict read from the interval ("better", "worse", "within noise"), never from a gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loralab.report.points import Point, Value
from loralab.report.stats import Estimate, paired_difference, verdict


@dataclass(frozen=True)
class Comparison:
    """A point against the reference on one value: point - reference, per seed both ran."""

    point: Point
    reference: Point
    difference: Estimate | None  # in the report's units (accuracy points, perplexity, ...)
    higher_is_better: bool = True

    @property
    def pairs(self) -> int:
        return self.difference.n if self.difference else 0

    @property
    def verdict(self) -> str | None:
        """'better', 'worse' or 'within noise' for the point; None with fewer than 2 pairs."""
        if self.difference is None:
            return None
        return verdict(self.difference if self.higher_is_better else self.difference.scaled(-1))


def reference_point(points: Sequence[Point]) -> Point | None:
    """The full fine-tuning point every other point is compared with (the first, if several)."""
    return next((p for p in points if p.is_full and p.completed), None)


def compare(
    points: Sequence[Point],
    reference: Point,
    value: Value,
    scale: float = 1.0,
    higher_is_better: bool = True,
) -> list[Comparison]:
    """Each trained point but the reference against it: scale * (value - reference's value)."""
    reference_values = reference.values(value)
    out = []
    for point in points:
        if point is reference or point.untrained or not point.completed:
            continue
        difference = paired_difference(point.values(value), reference_values)
        scaled = difference.scaled(scale) if difference else None
        out.append(Comparison(point, reference, scaled, higher_is_better))
    return out


def by_verdict(
    comparisons: Sequence[Comparison], words: Sequence[str]
) -> list[tuple[str, list[Comparison]]]:
    """The comparisons judged each of `words`, word by word in that order; a word none of them
    got is left out (the report writes one sentence per group)."""
    groups = [(word, [c for c in comparisons if c.verdict == word]) for word in words]
    return [(word, group) for word, group in groups if group]

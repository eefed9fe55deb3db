"""Confidence intervals for the few numbers a sweep has: a point's seeds, seed-paired
differences, and the test accuracy of a single run.

With n seeds the 95% interval of a mean is mean +- t(0.975, n-1) * s / sqrt(n), s the sample
standard deviation: with 3 seeds t is 4.30, so three close numbers can still leave a wide
interval. That is the honest width for three runs; a normal quantile (1.96) would hide it.
One run has no spread to estimate, but the test accuracy of one run is a count of correct
answers out of a known test-set size, whose binomial (Wilson) interval says how much the
test sample alone could move it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as distributions

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """The mean of n values with its confidence interval; std and interval None when n = 1."""

    mean: float
    n: int
    std: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units (e.g. a fraction as percentage points)."""

        def scale(x: float | None) -> float | None:
            return None if x is None else x * factor

        low, high = scale(self.low), scale(self.high)
        if factor < 0 and low is not None and high is not None:
            low, high = high, low
        std = None if self.std is None else abs(self.std * factor)
        return Estimate(self.mean * factor, self.n, std, low, high)


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student t quantile: t such that P(|T| <= t) = confidence with df degrees."""
    if df < 1:
        raise ValueError(f"a t quantile needs at least 1 degree of freedom, got {df}")
    return float(distributions.t.ppf(0.5 + confidence / 2, df))


def estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean, sample standard deviation and t interval of the mean of `values`."""
    if not values:
        raise ValueError("an estimate needs at least one value")
    values = [float(v) for v in values]
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, 1)
    std = statistics.stdev(values)
    half = t_quantile(len(values) - 1, confidence) * std / math.sqrt(len(values))
    return Estimate(mean, len(values), std, mean - half, mean + half)


def paired_difference(
    values: Mapping[Hashable, float],
    reference: Mapping[Hashable, float],
    confidence: float = CONFIDENCE,
) -> Estimate | None:
    """The mean of value - reference over the seeds both have, with its t interval.

    Pairing by seed removes what two runs of one seed share (their data, their test set,
    their initial head), so it sees a real difference sooner than comparing two means.
    """
    seeds = [s for s in values if s in reference]
    if not seeds:
        return None
    return estimate([values[s] - reference[s] for s in seeds], confidence)


def wilson_interval(
    proportion: float, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval of a proportion measured on n independent examples."""
    if n < 1:
        raise ValueError(f"a Wilson interval needs at least one example, got n={n}")
    if not 0.0 <= proportion <= 1.0:
        raise ValueError(f"a proportion lies in [0, 1], got {proportion}")
    z = float(distributions.norm.ppf(0.5 + confidence / 2))
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (proportion + z2 / (2 * n)) / denominator
    half = z * math.sqrt(proportion * (1 - proportion) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(difference: Estimate | None) -> str | None:
    """'better' or 'worse' when the interval of a difference (positive = better) excludes 0,
    'within noise' when it holds 0; None without an interval (fewer than two pairs)."""
    if difference is None or not difference.has_interval:
        return None
    if difference.low > 0:
        return "better"
    if difference.high < 0:
        return "worse"
    return "within noise"

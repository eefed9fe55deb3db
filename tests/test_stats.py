"""The report's statistics against numbers worked out by hand (t table, Wilson's formula)."""

from __future__ import annotations

import math

import pytest

from loralab.report.stats import (
    Estimate,
    estimate,
    paired_difference,
    t_quantile,
    verdict,
    wilson_interval,
)


def test_t_quantiles_match_the_printed_table():
    # two-sided 95%: t(0.975, df) from any statistics table
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(2) == pytest.approx(4.303, abs=1e-3)
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(30) == pytest.approx(2.042, abs=1e-3)
    with pytest.raises(ValueError, match="degree of freedom"):
        t_quantile(0)


def test_mean_std_and_t_interval_of_four_values():
    # 1, 2, 3, 4: mean 2.5, s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, s = 1.29099;
    # half-width = t(0.975, 3) * s / sqrt(4) = 3.18245 * 1.29099 / 2 = 2.05426
    est = estimate([1, 2, 3, 4])
    assert (est.mean, est.n) == (2.5, 4)
    assert est.std == pytest.approx(math.sqrt(5 / 3))
    assert est.low == pytest.approx(0.44574, abs=1e-5)
    assert est.high == pytest.approx(4.55426, abs=1e-5)
    assert est.half_width == pytest.approx(2.05426, abs=1e-5)


def test_three_seeds_give_an_interval_of_4_30_standard_errors():
    # 92, 93, 91: mean 92, s = 1, half-width = 4.30265 / sqrt(3) = 2.48414
    est = estimate([92.0, 93.0, 91.0])
    assert est.mean == 92.0 and est.std == pytest.approx(1.0)
    assert (est.low, est.high) == (
        pytest.approx(89.51586, abs=1e-5),
        pytest.approx(94.48414, abs=1e-5),
    )


def test_one_value_has_no_interval_and_none_is_an_error():
    est = estimate([0.9])
    assert est == Estimate(0.9, 1) and not est.has_interval and est.half_width is None
    with pytest.raises(ValueError):
        estimate([])


def test_scaling_turns_a_fraction_into_points_and_a_negative_factor_swaps_the_bounds():
    est = estimate([0.90, 0.92])  # mean 0.91, s = 0.014142, half = 12.7062 * 0.01 = 0.127062
    points = est.scaled(100)
    assert points.mean == pytest.approx(91.0) and points.high == pytest.approx(103.7062, abs=1e-4)
    flipped = est.scaled(-1)
    assert flipped.low == pytest.approx(-est.high) and flipped.high == pytest.approx(-est.low)
    assert flipped.std == pytest.approx(est.std)


def test_paired_differences_use_only_the_seeds_both_ran():
    lora = {1: 88.8, 2: 92.1, 3: 94.9, 4: 50.0}
    full = {1: 90.0, 2: 93.0, 3: 96.0}
    # differences -1.2, -0.9, -1.1: mean -1.06667, s = 0.15275, half = 4.30265 * s / sqrt(3)
    diff = paired_difference(lora, full)
    assert diff.n == 3 and diff.mean == pytest.approx(-1.06667, abs=1e-5)
    assert diff.std == pytest.approx(0.15275, abs=1e-5)
    assert (diff.low, diff.high) == (
        pytest.approx(-1.44612, abs=1e-5),
        pytest.approx(-0.68721, abs=1e-5),
    )
    assert paired_difference({1: 1.0}, {2: 1.0}) is None


def test_wilson_interval_of_an_accuracy():
    # z = 1.95996; for 92 of 100: centre (0.92 + z^2/200) / (1 + z^2/100) = 0.90446,
    # half z * sqrt(0.92 * 0.08 / 100 + z^2 / 40000) / (1 + z^2/100) = 0.05444
    low, high = wilson_interval(0.92, 100)
    assert (low, high) == (pytest.approx(0.85002, abs=1e-5), pytest.approx(0.95891, abs=1e-5))
    # ten times the examples: about a third of the width
    low, high = wilson_interval(0.92, 1000)
    assert (low, high) == (pytest.approx(0.90153, abs=1e-5), pytest.approx(0.93525, abs=1e-5))
    # at the edges it stays inside [0, 1] (a normal interval would have zero width there):
    # 50 of 50 gives [n / (n + z^2), 1] = [50 / 53.8415, 1]
    assert wilson_interval(1.0, 50) == (pytest.approx(0.92865, abs=1e-5), pytest.approx(1.0))
    assert wilson_interval(0.0, 50) == (
        pytest.approx(0.0, abs=1e-12),
        pytest.approx(0.07135, abs=1e-5),
    )
    with pytest.raises(ValueError, match="n=0"):
        wilson_interval(0.5, 0)


def test_verdicts_come_from_the_interval():
    assert verdict(Estimate(0.5, 3, 0.1, 0.2, 0.8)) == "better"
    assert verdict(Estimate(-0.5, 3, 0.1, -0.8, -0.2)) == "worse"
    assert verdict(Estimate(0.5, 3, 1.0, -0.4, 1.4)) == "within noise"
    assert verdict(Estimate(3.0, 1)) is None  # one pair: a gap, not a finding
    assert verdict(None) is None

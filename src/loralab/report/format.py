"""How the report writes its numbers and tables: counts, bytes, percentages, a value with
its uncertainty ('92.9 ± 0.8%', '+0.4 points (95% CI -1.1 to +1.9)') and a Markdown table.

Accuracies are stored as fractions and shown in percent with one decimal; differences of
accuracies are already in points. Other numbers (perplexity, milliseconds) get as many
decimals as show their interval's half-width to two significant figures. Every other
module of the report writes a number through these, so one figure reads the same in a
table, a sentence and runs.csv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from loralab.report.stats import CONFIDENCE, Estimate


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; `|` inside a cell is escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def fmt_count(n: Any) -> str:
    return f"{int(n):,}" if isinstance(n, int | float) else "–"


def fmt_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return "–"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_number(n: Any, digits: int = 1) -> str:
    return f"{n:.{digits}f}" if isinstance(n, int | float) else "–"


def fmt_plain(n: Any) -> str:
    """16 -> '16', 0.5 -> '0.5'."""
    return f"{n:g}" if isinstance(n, int | float) else "–"


def fmt_percent(n: Any) -> str:
    if not isinstance(n, int | float):
        return "–"
    return f"{n:.2f}%" if n < 10 else f"{n:.1f}%"


def fmt_targets(targets: Any) -> str:
    if not targets:
        return "–"
    return ",".join(str(t) for t in targets) if isinstance(targets, list) else str(targets)


# decimals of a number that has no interval to size them by
DEFAULT_DECIMALS = 2


def decimals_for(half_width: float | None) -> int:
    """0.011 -> 3, 0.4 -> 2, 1.0 -> 1, 23 -> 0: two significant figures of the half-width."""
    if half_width is None or not math.isfinite(half_width) or half_width <= 0:
        return DEFAULT_DECIMALS
    return max(0, min(6, 1 - math.floor(math.log10(half_width))))


def fmt_value(value: float | None, percent: bool) -> str:
    """A stored value: 0.929 -> '92.9%' (accuracy), 1.4231 -> '1.42' (perplexity)."""
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.3g}"


def fmt_estimate(estimate: Estimate | None, percent: bool) -> str:
    """Mean ± half-width of its interval: '92.9 ± 0.8%', '1.420 ± 0.011'; one value: '92.9%'."""
    if estimate is None:
        return "–"
    if not estimate.has_interval:
        return fmt_value(estimate.mean, percent)
    if percent:
        return f"{100 * estimate.mean:.1f} ± {100 * estimate.half_width:.1f}%"
    d = decimals_for(estimate.half_width)
    return f"{estimate.mean:.{d}f} ± {estimate.half_width:.{d}f}"


def fmt_signed(value: float, points: bool, decimals: int | None = None) -> str:
    """A difference already in its units: '+0.4' (accuracy points), '-0.031' (perplexity)."""
    if points:
        return f"{value:+.1f}"
    return f"{value:+.{DEFAULT_DECIMALS if decimals is None else decimals}f}"


def _decimals(estimate: Estimate, points: bool) -> int | None:
    return None if points else decimals_for(estimate.half_width)


def fmt_interval(estimate: Estimate, points: bool) -> str:
    """'95% CI -1.1 to +1.9' of a difference; '' when there is no interval (one pair)."""
    if not estimate.has_interval:
        return ""
    d = _decimals(estimate, points)
    level = f"{100 * CONFIDENCE:.0f}%"
    return f"{level} CI {fmt_signed(estimate.low, points, d)} to {fmt_signed(estimate.high, points, d)}"


def fmt_mean_difference(estimate: Estimate, points: bool) -> str:
    """The mean of a difference, with the decimals its interval calls for."""
    return fmt_signed(estimate.mean, points, _decimals(estimate, points))


def fmt_difference(estimate: Estimate, points: bool, unit: str) -> str:
    """'+0.4 points (95% CI -1.1 to +1.9, 3 seeds)', or '+0.4 points (1 seed, no interval)'."""
    mean = f"{fmt_mean_difference(estimate, points)} {unit}"
    if not estimate.has_interval:
        return f"{mean} (1 seed, no interval)"
    return f"{mean} ({fmt_interval(estimate, points)}, {estimate.n} seeds)"


def fmt_comparisons(comparisons: Sequence, points: bool) -> str:  # of report.compare.Comparison
    """'lora_r1 -2.3 [-3.1, -1.5]; lora_r2 -1.9 [-2.8, -1.0]': each mean and its 95% CI."""
    parts = []
    for c in comparisons:
        d = c.difference
        text = f"{c.point.label} {fmt_mean_difference(d, points)}"
        if d.has_interval:
            k = _decimals(d, points)
            text += f" [{fmt_signed(d.low, points, k)}, {fmt_signed(d.high, points, k)}]"
        parts.append(text)
    return "; ".join(parts)


def fmt_change(estimate: Estimate | None, points: bool) -> str:
    """A change already in its units (points, perplexity): '12.3 ± 1.1', one value: '0.82'."""
    if estimate is None:
        return "–"
    if not estimate.has_interval:
        return f"{estimate.mean:.1f}" if points else f"{estimate.mean:.3g}"
    d = 1 if points else decimals_for(estimate.half_width)
    return f"{estimate.mean:.{d}f} ± {estimate.half_width:.{d}f}"


def fmt_plain_estimate(estimate: Estimate | None, digits: int) -> str:
    """A measured quantity in its own units: '95.8 ± 23.1' (ms), '664 ± 140' (MiB)."""
    if estimate is None:
        return "–"
    mean = f"{estimate.mean:.{digits}f}"
    return f"{mean} ± {estimate.half_width:.{digits}f}" if estimate.has_interval else mean

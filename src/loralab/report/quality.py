"""Which number says how good a run is: accuracy, exact match, perplexity or loss.

Classification runs log val/acc and test/acc (higher is better); instruction-tuned language
models val/exact_match and test/exact_match (their greedy answers, higher is better); other
language-model runs val/ppl and test/ppl (lower is better). The report compares runs on the
first of these they have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loralab.report.collect import SweepRun


@dataclass(frozen=True)
class Quality:
    name: str
    val: str
    test: str
    higher_is_better: bool
    # accuracies are shown in percent and compared in points
    percent: bool

    def best_val(self, run: SweepRun) -> float | None:
        """The best validation value: the logged `<val>_best`, else the best point of the curve."""
        logged = run.metric(f"{self.val}_best")
        if logged is not None:
            return logged
        curve = [value for _, value in run.curves.get(self.val, [])]
        if curve:
            return max(curve) if self.higher_is_better else min(curve)
        return run.metric(self.val)

    def test_value(self, run: SweepRun) -> float | None:
        return run.metric(self.test)

    def gap(self, value: float, reference: float) -> float:
        """How much worse `value` is than `reference`: points for accuracy, else raw units."""
        worse = reference - value if self.higher_is_better else value - reference
        return 100 * worse if self.percent else worse


ACCURACY = Quality("accuracy", "val/acc", "test/acc", higher_is_better=True, percent=True)
EXACT_MATCH = Quality(
    "exact match", "val/exact_match", "test/exact_match", higher_is_better=True, percent=True
)
PERPLEXITY = Quality("perplexity", "val/ppl", "test/ppl", higher_is_better=False, percent=False)
LOSS = Quality("loss", "val/loss", "test/loss", higher_is_better=False, percent=False)


def choose_quality(runs: Sequence[SweepRun]) -> Quality:
    """Accuracy if any run logged it, else exact match, else perplexity, else loss."""
    for quality in (ACCURACY, EXACT_MATCH, PERPLEXITY):
        for run in runs:
            if run.metric(quality.val) is not None or run.metric(quality.test) is not None:
                return quality
    return LOSS

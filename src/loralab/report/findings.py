"""The report's "findings": a short paragraph written from the sweep's numbers."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from loralab.report.collect import Run
from loralab.report.quality import Quality
from loralab.report.ranks import RankAnalysis

# "close to full fine-tuning": 2 accuracy points, or 5% of the reference perplexity / loss
CLOSE_POINTS = 2.0
CLOSE_RELATIVE = 0.05
# the claim to check: LoRA from this rank on matches full fine-tuning
MATCHING_RANK = 4


def is_close(quality: Quality, value: float, reference: float) -> bool:
    limit = CLOSE_POINTS if quality.percent else CLOSE_RELATIVE * abs(reference)
    return quality.gap(value, reference) <= limit


def _closeness(quality: Quality) -> str:
    return f"{CLOSE_POINTS:g} points" if quality.percent else f"{CLOSE_RELATIVE:.0%}"


def _pct(run: Run) -> str:
    value = run.summary.trainable_percent
    return f"{value:.2g}%" if isinstance(value, int | float) else "an unknown share"


def quality_sentences(runs: Sequence[Run], quality: Quality) -> list[str]:
    """Full fine-tuning, untrained references and the best LoRA run; then how close LoRA gets."""
    scored = [r for r in runs if r.completed and quality.test_value(r) is not None]
    full = next((r for r in scored if r.is_full), None)
    lora = sorted(
        (r for r in scored if r.is_adapter), key=lambda r: r.summary.trainable_params or 0
    )
    sentences = []
    if full:
        sentences.append(
            f"Full fine-tuning reaches {quality.format(quality.test_value(full))} test "
            f"{quality.name}, training all {full.summary.trainable_params:,} parameters."
        )
    for run in (r for r in scored if r.untrained):
        sentences.append(
            f"Without fine-tuning, {run.name} scores {quality.format(quality.test_value(run))}."
        )
    if lora:
        sign = 1 if quality.higher_is_better else -1
        best = max(lora, key=lambda r: sign * quality.test_value(r))
        sentences.append(
            f"The best LoRA run, {best.name}, reaches {quality.format(quality.test_value(best))} "
            f"training {_pct(best)} of the parameters."
        )
    if full and lora:
        sentences += closeness_sentences(lora, quality, quality.test_value(full))
    return sentences


def closeness_sentences(lora: Sequence[Run], quality: Quality, reference: float) -> list[str]:
    """The cheapest LoRA run close to full fine-tuning, and whether every r >= 4 run is."""
    sentences = []
    close = [r for r in lora if is_close(quality, quality.test_value(r), reference)]
    if close:
        smallest = close[0]  # `lora` is sorted by trainable parameters
        sentences.append(
            f"The smallest LoRA run within {_closeness(quality)} of full fine-tuning is "
            f"{smallest.name}: it trains {_pct(smallest)} of the parameters and is "
            f"{quality.describe_gap(quality.test_value(smallest), reference)} full fine-tuning."
        )
    ranked = [
        r for r in lora if isinstance(r.summary.rank, int) and r.summary.rank >= MATCHING_RANK
    ]
    far = [r.name for r in ranked if r not in close]
    if ranked and not far:
        sentences.append(
            f"Every LoRA run with r >= {MATCHING_RANK} is within {_closeness(quality)} "
            "of full fine-tuning."
        )
    elif far:
        sentences.append(
            f"Of the LoRA runs with r >= {MATCHING_RANK}, {', '.join(far)} "
            f"{'is' if len(far) == 1 else 'are'} more than {_closeness(quality)} behind full "
            "fine-tuning."
        )
    return sentences


def cost_sentence(runs: Sequence[Run]) -> str | None:
    """Peak memory and step time of a typical LoRA run (the one nearest r=8) against full."""
    done = [r for r in runs if r.completed and r.summary.peak_memory_mib and r.summary.step_time_ms]
    full = next((r for r in done if r.is_full), None)
    lora = [r for r in done if r.is_adapter and isinstance(r.summary.rank, int)]
    if not (full and lora):
        return None
    typical = min(lora, key=lambda r: abs(r.summary.rank - 8))
    memory = typical.summary.peak_memory_mib / full.summary.peak_memory_mib
    time = typical.summary.step_time_ms / full.summary.step_time_ms
    sentence = (
        f"{typical.name} peaks at {typical.summary.peak_memory_mib:.0f} MiB against "
        f"{full.summary.peak_memory_mib:.0f} MiB for full fine-tuning (x{memory:.2f}) and "
        f"takes {typical.summary.step_time_ms:.1f} ms per training step against "
        f"{full.summary.step_time_ms:.1f} ms (x{time:.2f})."
    )
    state, full_state = typical.summary.train_state_mib, full.summary.train_state_mib
    if state and full_state:
        sentence += (
            f" Its weights, gradients and optimizer state take {state:.1f} MiB against "
            f"{full_state:.1f} MiB (x{state / full_state:.2f})."
        )
    return sentence


def rank_sentences(analysis: RankAnalysis) -> list[str]:
    sentences = []
    for label, kind in analysis.kinds.items():
        if kind != "full":
            continue
        ranks = list(analysis.ranks[label].values())
        size = max(r.full_rank for r in ranks)
        r90, r99 = [r.rank90 for r in ranks], [r.rank99 for r in ranks]
        median99 = statistics.median(r99)
        verdict = "is low-rank" if median99 <= size / 4 else "is not clearly low-rank"
        sentences.append(
            f"The full fine-tuning update {verdict}: across its {len(ranks)} attention "
            f"projections (matrix rank up to {size}), 90% of the energy of delta W lies in the "
            f"top {min(r90)}-{max(r90)} directions (median {statistics.median(r90):g}) and 99% "
            f"in the top {min(r99)}-{max(r99)} (median {median99:g} of {size})."
        )
        break
    comparison = analysis.subspace
    if comparison is not None:
        grids = list(comparison.grids.values())
        top = statistics.mean(float(g[0, 0]) for g in grids)
        inside = statistics.mean(float(g[-1, -1]) for g in grids)
        d = statistics.mean(comparison.input_dim.values())
        small, large = comparison.small_rank, comparison.large_rank
        sentences.append(
            f"The top directions of the r={small} and r={large} adapters overlap with "
            f"phi(1, 1) = {top:.2f} on average (random directions: {1 / d:.2f}), and the "
            f"r={small} subspace against the r={large} one gives phi({small}, {large}) = "
            f"{inside:.2f} (random: {grids[0].shape[1] / d:.2f})."
        )
    return sentences


def failure_sentence(runs: Sequence[Run]) -> str | None:
    failed = [r.name for r in runs if not r.completed]
    if not failed:
        return None
    return f"{len(failed)} run(s) failed ({', '.join(failed)}); see the failed runs below."


def findings(runs: Sequence[Run], quality: Quality, analysis: RankAnalysis) -> str:
    """One paragraph: quality against full fine-tuning, cost, rank analysis, failures."""
    parts = [
        *quality_sentences(runs, quality),
        cost_sentence(runs),
        *rank_sentences(analysis),
        failure_sentence(runs),
    ]
    return " ".join(p for p in parts if p) or "No run of this sweep completed."

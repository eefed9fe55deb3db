"""The report compares instruction-tuned LLM runs on exact match, in points, base included."""

from __future__ import annotations

import pytest
from tests.test_report import classifier, fake_run

from loralab.report import build_report, collect_runs
from loralab.report.quality import EXACT_MATCH, choose_quality


def test_llm_runs_are_compared_on_exact_match_in_points(tmp_path):
    sweep = tmp_path / "llm"
    runs = [("full", "full", None, 0.62), ("lora_r8_a16_qv", "lora", 8, 0.58)]
    for job, (name, adapter, rank, em) in enumerate(runs):
        summary = classifier(name, adapter, rank, 1000, 0, 0)
        summary["metrics"] = {"val/ppl": 1.4, "test/ppl": 1.5, "test/exact_match": em}
        fake_run(sweep, job, summary, {"val/exact_match": [(50, em - 0.1), (100, em)]})
    base = classifier("base", "full", None, 1000, 0, 0)
    base.update(global_step=0, metrics={"test/ppl": 9.0, "test/exact_match": 0.0})
    fake_run(sweep, 2, base)
    collected = collect_runs(sweep)
    assert choose_quality(collected) is EXACT_MATCH  # before perplexity, which they log too
    assert EXACT_MATCH.best_val(collected[0]) == pytest.approx(0.62)
    text = build_report(sweep).read_text()
    assert "test exact match" in text and "| 62.0% |" in text and "| 58.0% |" in text
    assert "Without fine-tuning, base scores 0.0%." in text


def test_llm_learning_starts_from_the_untrained_base_point(tmp_path):
    """An LLM run tests exact match only after training; its gain counts from the base's."""
    sweep = tmp_path / "llm"
    runs = [("full", "full", None, 0.62, 60.4), ("lora_r8_a16_qv", "lora", 8, 0.58, 73.7)]
    for job, (name, adapter, rank, em, ppl) in enumerate(runs):
        summary = classifier(name, adapter, rank, 1000, 0, 0)
        summary["metrics"] = {
            "test/ppl": 1.5,
            "test/exact_match": em,
            "source/ppl_start": 54.9,
            "source/ppl": ppl,
        }
        fake_run(sweep, job, summary, {"val/exact_match": [(100, em)]})
    base = classifier("base", "full", None, 1000, 0, 0)
    base.update(global_step=0, metrics={"test/exact_match": 0.02, "source/ppl": 54.9})
    fake_run(sweep, 2, base)
    text = build_report(sweep).read_text()
    table = text.split("## Forgetting")[1]
    # point, seeds, gain on target (62% - 2% = 60 points), perplexity before, after, forgetting
    assert "| full | 1 | 60.0 | 54.9 | 60.4 | 5.5 |" in table
    assert "| lora_r8_a16_qv | 1 | 56.0 | 54.9 | 73.7 | 18.8 |" in table
    assert (sweep / "learning_vs_forgetting.png").is_file()

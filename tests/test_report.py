"""The report from sweep folders built by hand: every run a row, failures listed, plots drawn,
and any metric family (accuracy for classifiers, perplexity for language models)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from loralab.report import build_report, collect_runs, newest_sweep
from loralab.report.__main__ import main as report_main
from loralab.report.findings import findings
from loralab.report.quality import ACCURACY, PERPLEXITY, choose_quality
from loralab.report.ranks import RankAnalysis
from loralab.run.summary import RunSummary

PLOTS = ("curves.png", "quality_vs_params.png", "trainable_params.png", "resources.png")


def fake_run(sweep: Path, job: int, summary: dict, curves: dict | None = None) -> Path:
    """A run folder as `python -m loralab.train -m` leaves it: summary.json and event files."""
    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    if summary:
        (run / "summary.json").write_text(json.dumps(summary))
    if curves:
        writer = SummaryWriter(run / "tensorboard" / summary.get("run_name", "run"))
        for tag, points in curves.items():
            for step, value in points:
                writer.add_scalar(tag, value, step)
        writer.close()
    return run


def classifier(name: str, adapter: str, rank, trainable: int, val: float, test: float) -> dict:
    return {
        "status": "completed",
        "run_name": name,
        "adapter": adapter,
        "rank": rank,
        "alpha": 2 * rank if rank else None,
        "targets": ["q_proj", "v_proj"] if rank else None,
        "trainable_params": trainable,
        "total_params": 100_000 + (trainable if rank else 0),
        "trainable_percent": 100 * trainable / (100_000 + (trainable if rank else 0)),
        "metrics": {"val/acc": val, "val/acc_best": val, "test/acc": test},
        "peak_memory_mib": 500.0,
        "train_state_mib": 1.5 if rank else 6.0,
        "step_time_ms": 20.0 if rank else 30.0,
        "checkpoint_bytes": 4000,
    }


def classification_sweep(sweep: Path) -> None:
    curve = {"val/acc": [(10, 0.8), (20, 0.9)], "train/loss_step": [(5, 0.7), (15, 0.3)]}
    fake_run(sweep, 0, classifier("full", "full", None, 100_000, 0.95, 0.94), curve)
    fake_run(sweep, 1, classifier("lora_r1_a2_qv", "lora", 1, 500, 0.85, 0.84), curve)
    fake_run(sweep, 2, classifier("lora_r4_a8_qv", "lora", 4, 1_800, 0.94, 0.935), curve)
    failed = {"status": "failed", "run_name": "lora_r0_a16_qv", "error": "AdapterConfigError: bad"}
    fake_run(sweep, 3, failed)
    fake_run(sweep, 10, {})  # killed before it wrote a summary


def table_rows(report: str) -> list[str]:
    runs = report.split("## Runs")[1].split("\n\n")[1]
    return runs.splitlines()[2:]


def test_report_has_a_row_per_run_lists_failures_and_draws_the_plots(tmp_path):
    sweep = tmp_path / "sweep"
    classification_sweep(sweep)
    text = build_report(sweep).read_text()

    rows = table_rows(text)
    assert [r.split(" | ")[0].lstrip("| ") for r in rows[:4]] == [
        "full", "lora_r1_a2_qv", "lora_r4_a8_qv", "lora_r0_a16_qv",
    ]  # fmt: skip
    assert len(rows) == 5  # job 10 too, in numeric (not string) order after job 3
    assert [r.rstrip(" |").split(" | ")[-1] for r in rows] == ["completed"] * 3 + ["failed"] * 2
    assert "| 94.0% |" in rows[0] and "| 93.5% |" in rows[2]
    assert "AdapterConfigError: bad" in text and "no summary.json" in text
    for name in PLOTS:
        assert (sweep / name).stat().st_size > 1000 and f"]({name})" in text
    # the findings compare with full fine-tuning in accuracy points
    assert "lora_r4_a8_qv: it trains 1.8% of the parameters and is 0.5 points worse" in text
    assert "2 run(s) failed" in text
    # weights + gradients + optimizer state: a column, and a ratio in the findings
    assert "weights+grads+optimizer (MiB)" in text and "| 6.0 |" in rows[0]
    assert "optimizer state take 1.5 MiB against 6.0 MiB (x0.25)" in text


def test_curves_are_read_from_event_files_one_value_per_step(tmp_path):
    sweep = tmp_path / "sweep"
    summary = classifier("full", "full", None, 100_000, 0.95, 0.94)
    # a final value logged again at an earlier step replaces that step's value
    fake_run(sweep, 0, summary, {"val/acc": [(10, 0.8), (20, 0.9), (10, 0.85)]})
    (run,) = collect_runs(sweep)
    assert run.curves["val/acc"] == [(10, pytest.approx(0.85)), (20, pytest.approx(0.9))]


def test_language_model_runs_are_compared_on_perplexity(tmp_path):
    sweep = tmp_path / "lm"
    for job, (name, adapter, rank, ppl) in enumerate(
        [("full", "full", None, 5.0), ("lora_r8_a16_qv", "lora", 8, 5.1)]
    ):
        summary = classifier(name, adapter, rank, 1000, 0, 0)
        summary["metrics"] = {"val/loss": 1.6, "val/ppl": ppl, "test/ppl": ppl + 0.2}
        summary["base_weight_bytes"] = 123_456  # a field another adapter adds: its own column
        fake_run(sweep, job, summary, {"val/ppl": [(10, ppl + 1), (20, ppl)]})
    # the pretrained base, evaluated without training: a reference, not full fine-tuning
    base = classifier("base", "full", None, 1000, 0, 0)
    base.update(global_step=0, metrics={"test/ppl": 26.0})
    fake_run(sweep, 2, base)
    runs = collect_runs(sweep)
    assert choose_quality(runs) is PERPLEXITY
    assert PERPLEXITY.best_val(runs[1]) == pytest.approx(5.1)  # lowest point of the curve
    assert [(r.is_full, r.is_adapter, r.untrained) for r in runs] == [
        (True, False, False), (False, True, False), (False, False, True),
    ]  # fmt: skip
    text = build_report(sweep).read_text()
    assert "test perplexity" in text and "| 5.3 |" in text and "base weights" in text
    assert "| 120.6 KiB |" in text
    assert "lower is better" in text
    assert "Full fine-tuning reaches 5.2 test perplexity" in text
    assert "Without fine-tuning, base scores 26." in text
    assert "0.1 perplexity worse than full fine-tuning" in text


def test_findings_name_the_lora_runs_that_fall_behind():
    from loralab.report.collect import Run

    full = Run(
        Path("0"), RunSummary.from_dict(classifier("full", "full", None, 100_000, 0.95, 0.95))
    )
    weak = Run(
        Path("1"), RunSummary.from_dict(classifier("lora_r8_a16_qv", "lora", 8, 2_000, 0.90, 0.90))
    )
    text = findings([full, weak], ACCURACY, RankAnalysis())
    assert "lora_r8_a16_qv is more than 2 points behind full fine-tuning" in text


def test_the_command_line_picks_the_newest_sweep_and_fails_in_one_sentence(tmp_path, capsys):
    older = tmp_path / "logs" / "rank_sweep" / "multiruns" / "2026-01-01_10-00-00"
    newer = tmp_path / "logs" / "alpha_sweep" / "multiruns" / "2026-01-02_09-00-00"
    classification_sweep(older)
    fake_run(newer, 0, classifier("full", "full", None, 100_000, 0.95, 0.94))
    os.utime(older, (2e9, 2e9))  # a later mtime must not beat the later timestamp
    assert newest_sweep(tmp_path / "logs") == newer
    assert report_main(["--log-dir", str(tmp_path / "logs")]) == 0
    assert (newer / "report.md").is_file() and not (older / "report.md").exists()

    assert report_main(["--log-dir", str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().err.startswith("error: no sweep folder")

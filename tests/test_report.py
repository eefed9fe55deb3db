"""The report from sweep folders built by hand: every run a row, failures listed, plots drawn,
any metric family (accuracy for classifiers, perplexity for language models), runs grouped
into points over seeds with intervals, and findings that say "within noise" when it is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from loralab.report import build_report, collect_runs, newest_sweep
from loralab.report.__main__ import main as report_main
from loralab.report.points import group_points
from loralab.report.quality import PERPLEXITY, choose_quality

PLOTS = ("curves.png", "quality_vs_params.png", "trainable_params.png", "resources.png")


def fake_run(
    sweep: Path,
    job: int,
    summary: dict,
    curves: dict | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """A run folder as `python -m loralab.train -m` leaves it: summary.json, Hydra's record
    of the job's overrides, and event files."""
    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    if summary:
        (run / "summary.json").write_text(json.dumps(summary))
    if overrides is not None:
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
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
        "test_size": 1000,
    }


def classification_sweep(sweep: Path) -> None:
    curve = {"val/acc": [(10, 0.8), (20, 0.9)], "train/loss_step": [(5, 0.7), (15, 0.3)]}
    fake_run(sweep, 0, classifier("full", "full", None, 100_000, 0.95, 0.94), curve)
    fake_run(sweep, 1, classifier("lora_r1_a2_qv", "lora", 1, 500, 0.85, 0.84), curve)
    fake_run(sweep, 2, classifier("lora_r4_a8_qv", "lora", 4, 1_800, 0.94, 0.935), curve)
    failed = {"status": "failed", "run_name": "lora_r0_a16_qv", "error": "AdapterConfigError: bad"}
    fake_run(sweep, 3, failed)
    fake_run(sweep, 10, {})  # killed before it wrote a summary


def section(report: str, heading: str) -> str:
    return report.split(f"## {heading}")[1].split("\n## ")[0]


def table_rows(report: str, heading: str = "Runs (every run folder)") -> list[str]:
    """The rows of the first table under a heading."""
    blocks = section(report, heading).strip().split("\n\n")
    lines = next(b for b in blocks if b.startswith("|")).splitlines()
    return lines[2:]


def test_report_has_a_row_per_run_lists_failures_and_draws_the_plots(tmp_path):
    sweep = tmp_path / "sweep"
    classification_sweep(sweep)
    text = build_report(sweep, probe="never").read_text()

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
    assert "2 run(s) failed" in text
    # weights + gradients + optimizer state: a column, and a ratio in the findings
    assert "weights+grads+optimizer (MiB)" in text and "| 6.0 |" in rows[0]
    assert "optimizer state take 1.5 MiB against 6.0 MiB (x0.25)" in text


def test_one_seed_gives_the_wilson_interval_and_no_verdict(tmp_path):
    sweep = tmp_path / "sweep"
    classification_sweep(sweep)
    text = build_report(sweep, probe="never").read_text()
    findings = section(text, "Findings")
    # a 0.5-point gap on one seed is no finding: no "worse", no "within noise" either
    assert "is worse than full" not in findings and "within noise" not in findings
    assert "lora_r1_a2_qv and lora_r4_a8_qv have fewer than two seeds paired" in findings
    # 94.0% of 1,000: Wilson 92.4-95.3%; 93.5%: 91.8-94.9%
    assert "full: 94.0% on 1,000 examples, 92.4-95.3%" in findings
    assert "lora_r4_a8_qv: 93.5% on 1,000 examples, 91.8-94.9%" in findings
    assert "More seeds would tell" in findings
    points = table_rows(text, "Points (mean ± 95% CI over seeds)")
    assert "| 92.4-95.3% (n=1,000) |" in points[0]
    differences = table_rows(text, "Against full fine-tuning, paired by seed")
    assert differences[1].startswith("| lora_r4_a8_qv | 1 | -0.5 | – (one pair) |")


def seeded(sweep: Path, job: int, seed: int, summary: dict, point: list[str]) -> None:
    """One run of a point, as the points sweeper names it: the point's overrides, its seed."""
    summary = {**summary, "seed": seed}
    curve = {
        "val/acc": [(10, summary["metrics"]["val/acc"] - 0.05), (20, summary["metrics"]["val/acc"])]
    }
    fake_run(sweep, job, summary, curve, ["experiment=rank_sweep", *point, f"seed={seed}"])


def seeded_sweep(sweep: Path, full: list[float], lora: dict[str, list[float]]) -> None:
    """Full fine-tuning and LoRA points, each over seeds 1, 2, 3 (test accuracies given)."""
    job = 0
    for seed, acc in enumerate(full, start=1):
        seeded(
            sweep, job, seed, classifier("full", "full", None, 100_000, acc, acc), ["adapter=full"]
        )
        job += 1
    for name, accs in lora.items():
        rank = int(name.split("_r")[1].split("_")[0])
        for seed, acc in enumerate(accs, start=1):
            summary = classifier(name, "lora", rank, 100 * rank, acc, acc)
            seeded(sweep, job, seed, summary, ["adapter=lora", f"adapter.rank={rank}"])
            job += 1


def test_runs_that_differ_only_in_their_seed_are_one_point(tmp_path):
    sweep = tmp_path / "sweep"
    seeded_sweep(sweep, [0.92, 0.93, 0.91], {"lora_r8_a16_qv": [0.925, 0.915, 0.92]})
    points = group_points(collect_runs(sweep))
    assert [(p.label, p.seeds) for p in points] == [
        ("full", [1, 2, 3]),
        ("lora_r8_a16_qv", [1, 2, 3]),
    ]
    text = build_report(sweep, probe="never").read_text()
    rows = table_rows(text, "Points (mean ± 95% CI over seeds)")
    # full: 92, 93, 91 -> 92.0 ± 4.303 * 1 / sqrt(3) = 92.0 ± 2.5; n = 3
    assert "| 3 | 92.0 ± 2.5% | 92.0 ± 2.5% |" in rows[0]
    assert len(table_rows(text)) == 6  # and every run keeps its own row
    assert "seeds 1, 2, 3" in text


def test_a_difference_inside_the_noise_is_called_within_noise(tmp_path):
    sweep = tmp_path / "sweep"
    # paired differences +0.5, -1.5, +1.0 points: mean 0.0, 95% CI -3.3 to +3.3
    seeded_sweep(sweep, [0.92, 0.93, 0.91], {"lora_r8_a16_qv": [0.925, 0.915, 0.92]})
    text = build_report(sweep, probe="never").read_text()
    findings = section(text, "Findings")
    assert "lora_r8_a16_qv is within noise of full fine-tuning" in findings
    assert "is better than full" not in findings and "is worse than full" not in findings
    row = table_rows(text, "Against full fine-tuning, paired by seed")[0]
    assert row == "| lora_r8_a16_qv | 3 | +0.0 | 95% CI -3.3 to +3.3 | within noise |"


def test_a_consistent_gap_is_called_worse_even_when_the_means_overlap(tmp_path):
    sweep = tmp_path / "sweep"
    # the seeds move both methods alike (90, 93, 96), and LoRA is 0.9-1.2 points below every
    # time: the two means' intervals overlap widely, the paired difference is clear
    seeded_sweep(
        sweep,
        [0.90, 0.93, 0.96],
        {"lora_r8_a16_qv": [0.888, 0.921, 0.949], "lora_r16_a32_qv": [0.905, 0.925, 0.97]},
    )
    text = build_report(sweep, probe="never").read_text()
    findings = section(text, "Findings")
    # -1.2, -0.9, -1.1: mean -1.07, 95% CI -1.45 to -0.69
    assert (
        "lora_r8_a16_qv is worse than full fine-tuning: -1.1 points (95% CI -1.4 to -0.7, "
        "3 seeds) test accuracy, paired by seed." in findings
    )
    # +0.5, -0.5, +1.0: within noise
    assert "lora_r16_a32_qv is within noise of full fine-tuning" in findings
    assert (
        "The cheapest LoRA point not shown worse than full fine-tuning is lora_r16_a32_qv"
        in findings
    )
    rows = table_rows(text, "Against full fine-tuning, paired by seed")
    assert rows[0].endswith("| worse |") and rows[1].endswith("| within noise |")


def test_forgetting_is_compared_with_full_fine_tuning_paired_by_seed(tmp_path):
    sweep = tmp_path / "sweep"
    seeded_sweep(sweep, [0.92, 0.93, 0.91], {"lora_r8_a16_qv": [0.925, 0.915, 0.92]})
    # source accuracy 97% before; full loses 20, 22, 18 points; LoRA 1, 2, 0
    lost = {"0": 0.20, "1": 0.22, "2": 0.18, "3": 0.01, "4": 0.02, "5": 0.0}
    for job, loss in lost.items():
        path = sweep / job / "summary.json"
        summary = json.loads(path.read_text())
        summary["metrics"].update(
            {"test/acc_start": 0.5, "source/acc_start": 0.97, "source/acc": 0.97 - loss}
        )
        summary["source"] = "majority_group accuracy"
        path.write_text(json.dumps(summary))
    text = build_report(sweep, probe="never").read_text()
    findings = section(text, "Findings")
    # full: 20.0 ± 4.303 * 2 / sqrt(3) = 20.0 ± 5.0 points
    assert "full fine-tuning loses 20.0 ± 5.0 points (mean ± 95% CI over 3 seeds)" in findings
    # LoRA - full: -19, -20, -18: mean -19.0, 95% CI -21.5 to -16.5
    assert (
        "lora_r8_a16_qv forgets less than full fine-tuning: its loss minus full fine-tuning's "
        "is -19.0 points (95% CI -21.5 to -16.5, 3 seeds)" in findings
    )
    assert "lora_r8_a16_qv forgets least" in findings
    rows = table_rows(text, "Forgetting: learning on the target against loss on the source")
    assert rows[0].startswith("| full | 3 | 42.0 ± 2.5 | 97.0% | 77.0% | 20.0 ± 5.0 |")
    assert rows[1].endswith("| -19.0 | 95% CI -21.5 to -16.5 | forgets less |")
    assert (sweep / "learning_vs_forgetting.png").stat().st_size > 1000


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
    text = build_report(sweep, probe="never").read_text()
    assert "test perplexity" in text and "| 5.3 |" in text and "base weights" in text
    assert "| 120.6 KiB |" in text
    assert "lower is better" in text
    assert "Full fine-tuning reaches 5.2 test perplexity (one seed)" in text
    assert "Without fine-tuning, base scores 26." in text
    # a perplexity has no binomial interval: one seed, no verdict, ask for seeds
    assert "Wilson" not in section(text, "Findings") and "More seeds would tell" in text


def test_a_sweep_without_stored_configs_is_reported_without_the_probe(tmp_path):
    sweep = tmp_path / "sweep"
    classification_sweep(sweep)
    text = build_report(sweep).read_text()  # probe="auto": it tries, and says why not
    speed = section(text, "Speed and memory")
    assert "holds no checkpoint and no .hydra/config.yaml" in speed
    assert "per run: step (ms)" in speed
    saved = json.loads((sweep / "probe.json").read_text())
    assert set(saved["errors"]) == {"full", "lora_r1_a2_qv", "lora_r4_a8_qv"}


def test_the_command_line_picks_the_newest_sweep_and_fails_in_one_sentence(tmp_path, capsys):
    older = tmp_path / "logs" / "rank_sweep" / "multiruns" / "2026-01-01_10-00-00"
    newer = tmp_path / "logs" / "alpha_sweep" / "multiruns" / "2026-01-02_09-00-00"
    classification_sweep(older)
    fake_run(newer, 0, classifier("full", "full", None, 100_000, 0.95, 0.94))
    os.utime(older, (2e9, 2e9))  # a later mtime must not beat the later timestamp
    assert newest_sweep(tmp_path / "logs") == newer
    assert report_main(["--log-dir", str(tmp_path / "logs"), "--no-probe"]) == 0
    assert (newer / "report.md").is_file() and not (older / "report.md").exists()
    assert not (newer / "probe.json").exists()

    assert report_main(["--log-dir", str(tmp_path / "empty")]) == 1
    assert capsys.readouterr().err.startswith("error: no sweep folder")

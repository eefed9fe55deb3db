"""A report that reads at a glance: the untrained base as "no training", the rank analysis per
module kind with every module in ranks.csv, and a long sweep's runs in runs.csv."""

from __future__ import annotations

import csv

import torch
from tests.test_report import classifier, fake_run, section

from loralab.analysis import UpdateRank
from loralab.report import build_report
from loralab.report.ranks import RankAnalysis, module_kind, write_ranks_csv
from loralab.report.tables import energy_table


def profile(rank90: int, rank99: int, size: int = 64) -> UpdateRank:
    return UpdateRank((size, size), torch.ones(size), rank90, rank99)


def test_rank_table_gives_each_module_kind_its_median_and_range_and_the_csv_every_module(tmp_path):
    layers = {
        f"model.layers.{i}.self_attn.{name}": profile(r90 + i, r99 + i)
        for i in range(3)
        for name, r90, r99 in (("q_proj", 2, 5), ("v_proj", 1, 3))
    }
    layers["model.layers.0.mlp.gate_proj"] = profile(9, 20, size=128)
    analysis = RankAnalysis(
        ranks={"full": layers, "lora": {"model.layers.0.self_attn.q_proj": profile(4, 7)}}
    )
    assert module_kind("model.layers.11.mlp.gate_proj") == "gate"
    assert module_kind("encoder.blocks.3.mixer") == "encoder.blocks.*.mixer"
    rows = energy_table(analysis).splitlines()
    assert rows[0] == "| module kind | layers | full rank | full | lora |"
    assert rows[2:] == [
        "| q | 3 | 64 | 3 (2-4) / 6 (5-7) | 4 / 7 |",
        "| v | 3 | 64 | 2 (1-3) / 4 (3-5) | – |",
        "| gate | 1 | 128 | 9 / 20 | – |",
    ]
    path = write_ranks_csv(analysis, tmp_path / "ranks.csv")
    with open(path) as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 8 and table[0].keys() == {
        "point",
        "kind",
        "module",
        "full_rank",
        "rank90",
        "rank99",
    }
    assert {r["module"] for r in table if r["point"] == "full" and r["kind"] == "q"} == {
        f"model.layers.{i}.self_attn.q_proj" for i in range(3)
    }


def test_the_untrained_base_shows_no_training_and_no_trainable_count(tmp_path):
    fake_run(tmp_path, 0, classifier("full", "full", None, 100_000, 0.9, 0.9))
    base = classifier("base", "full", None, 100_000, 0.5, 0.5)
    base["global_step"] = 0
    fake_run(tmp_path, 1, base)
    text = build_report(tmp_path, probe="never").read_text()
    row = next(r for r in section(text, "Points").splitlines() if r.startswith("| base |"))
    assert row.startswith("| base | no training | – | – | – | – | – | – | 1 | 50.0% | 50.0% |")
    assert "100,000" not in row


def test_a_long_sweep_lists_its_runs_in_runs_csv_and_the_report_points_there(tmp_path):
    for job in range(16):
        fake_run(
            tmp_path, job, classifier(f"lora_r{job + 1}_a2_qv", "lora", job + 1, 500, 0.8, 0.8)
        )
    report = build_report(tmp_path, probe="never")
    runs = section(report.read_text(), "Runs (every run folder)")
    assert "The 16 runs, one row each" in runs and "(runs.csv)" in runs and "| lora_r1" not in runs
    with open(tmp_path / "runs.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["run"] for r in rows] == [f"lora_r{j + 1}_a2_qv" for j in range(16)]
    assert (
        rows[3]["rank"] == "4"
        and rows[3]["test accuracy"] == "80.0%"
        and rows[3]["status"] == "completed"
    )

"""Learning-rate grids: the sweeper's jobs, and a report that chooses each point's rate on
validation (never test), flags a rate at the grid's edge, draws rates.png and compares the
hand-picked rates' verdicts with the chosen ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from tests.conftest import config_dir, run_cli
from tests.test_report import classifier, fake_run, section

from hydra_plugins.loralab_sweeper.points_sweeper import own_rate, rate_grids, with_rate_grids
from loralab.report import build_report, collect_runs
from loralab.report.quality import ACCURACY
from loralab.report.rates import hand_picked_rate, select_rates


def parse(overrides: list[str]):
    return OverridesParser.create().parse_overrides(overrides)


POINTS = {"full": ["adapter=full", "adapter.lr=1e-3"], "lora": ["adapter=lora", "adapter.lr=1e-2"]}


def test_factors_multiply_each_points_own_rate_and_lrs_replace_them():
    assert own_rate(POINTS["lora"]) == 1e-2 and own_rate(["adapter=full"]) is None
    assert rate_grids(POINTS, {}, [0.1, 1, 3]) == {
        "full": [1e-4, 1e-3, 3e-3],
        "lora": [1e-3, 1e-2, 3e-2],
    }
    assert rate_grids(POINTS, {"full": [5e-5, 5e-4]}, None) == {"full": [5e-5, 5e-4]}
    # a point without a rate of its own (the untrained base) gets no grid from factors
    assert rate_grids({"base": ["train=false"]}, {}, [0.1, 1]) == {}
    with pytest.raises(HydraException, match=r"hydra.sweeper.lrs names \['r4'\]"):
        rate_grids(POINTS, {"r4": [1e-3]}, None)
    with pytest.raises(HydraException, match="must be positive"):
        rate_grids(POINTS, {}, [0, 1])


def test_every_rate_is_a_job_after_the_points_own_overrides_unless_the_command_line_sets_it():
    grids = {"lora": [1e-3, 1e-2]}
    jobs = with_rate_grids(POINTS, grids, parse(["debug=limit"]))
    assert jobs == {
        "full": [POINTS["full"]],
        "lora": [[*POINTS["lora"], "adapter.lr=0.001"], [*POINTS["lora"], "adapter.lr=0.01"]],
    }
    # the user's own rate (or rates) on the command line: the grids step aside
    assert with_rate_grids(POINTS, grids, parse(["adapter.lr=1e-4,1e-3"])) == {
        name: [overrides] for name, overrides in POINTS.items()
    }


def test_sweeper_runs_points_x_rates_x_seeds_seed_by_seed():
    import hydra_plugins.loralab_sweeper.points_sweeper  # noqa: F401 - registers the module

    module = sys.modules["hydra_plugins.loralab_sweeper.points_sweeper"]
    sweeper = module.PointsSweeper(
        max_batch_size=None, points=POINTS, seeds=[1, 2], lr_factors=[0.5, 2], only=["lora"]
    )
    (jobs,) = sweeper.split_arguments(parse([]), None)
    assert jobs == [
        [*POINTS["lora"], f"adapter.lr={lr}", f"seed={seed}"]
        for seed in (1, 2)
        for lr in ("0.005", "0.02")
    ]


def sweeper_config(experiment: str) -> dict:
    with hydra.initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra.compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.sweeper)


def test_lr_fair_runs_three_points_at_four_rates_over_three_seeds():
    sweeper = sweeper_config("lr_fair")
    assert sweeper["seeds"] == [1, 2, 3] and sweeper["lr_factors"] == [0.1, 0.3, 1, 3]
    grids = rate_grids(sweeper["points"], sweeper["lrs"], sweeper["lr_factors"])
    assert grids == {
        "full": [1e-4, 3e-4, 1e-3, 3e-3],
        "lora_qv": [1e-3, 3e-3, 1e-2, 3e-2],
        "lora_all": [1e-3, 3e-3, 1e-2, 3e-2],
    }


def test_llm_lr_fair_runs_base_full_and_lora_all_linear_at_three_rates_each():
    sweeper = sweeper_config("llm_lr_fair")
    points = {name: sweeper["points"][name] for name in sweeper["only"]}
    assert list(points) == ["base", "full", "lora_all"] and sweeper["seeds"] == [1234]
    assert rate_grids(points, sweeper["lrs"], sweeper["lr_factors"]) == {
        "full": [3e-5, 1e-4, 3e-4],
        "lora_all": [3e-4, 1e-3, 3e-3],
    }


def rate_run(name: str, adapter: str, lr: float, seed: int, val: float, test: float, own: float):
    """A run of a point whose hand-picked rate is `own`, trained at `lr` (the grid's)."""
    summary = classifier(name, adapter, 8 if adapter == "lora" else None, 8_000, val, test)
    summary.update(lr=lr, seed=seed)
    overrides = [f"adapter={adapter}", f"adapter.lr={own}", f"adapter.lr={lr}", f"seed={seed}"]
    return summary, overrides


def rate_sweep(sweep: Path) -> None:
    """full at 3 rates, LoRA at 3 rates, 2 seeds. full: validation prefers 1e-3, test 1e-4;
    LoRA: the best validation is at the grid's highest rate, 3e-2."""
    full = {1e-4: (0.80, 0.95), 1e-3: (0.90, 0.85), 3e-3: (0.70, 0.70)}
    lora = {3e-3: (0.60, 0.60), 1e-2: (0.75, 0.86), 3e-2: (0.85, 0.83)}
    job = 0
    for seed in (1, 2):
        for name, adapter, own, table in (
            ("full", "full", 1e-3, full),
            ("lora_r8_a16_qv", "lora", 1e-2, lora),
        ):
            for lr, (val, test) in table.items():
                wiggle = 0.01 * seed
                summary, overrides = rate_run(
                    name, adapter, lr, seed, val + wiggle, test + wiggle, own
                )
                fake_run(sweep, job, summary, overrides=overrides)
                job += 1


def test_each_point_takes_the_rate_with_the_best_validation_not_the_best_test(tmp_path):
    rate_sweep(tmp_path)
    runs = collect_runs(tmp_path)
    assert hand_picked_rate(runs[0]) == 1e-3
    selection = select_rates(runs, ACCURACY)
    full, lora = selection.searches
    assert (full.label, full.rates, full.chosen.lr) == ("full", [1e-4, 1e-3, 3e-3], 1e-3)
    assert (full.at_edge, lora.chosen.lr, lora.at_edge) == (None, 3e-2, "highest")
    # the rest of the report sees each point at its chosen rate only, both seeds of it
    assert [p.label for p in selection.points] == ["full", "lora_r8_a16_qv"]
    assert [r.summary.lr for r in selection.points[0].runs] == [1e-3, 1e-3]
    assert [p.first.summary.lr for p in selection.hand_picked] == [1e-3, 1e-2]


def test_report_states_the_chosen_rates_flags_the_edge_and_draws_the_rate_curves(tmp_path):
    rate_sweep(tmp_path)
    text = build_report(tmp_path).read_text()
    rates = section(text, "Learning rates: each point at its best rate on validation")
    rows = [r for r in rates.splitlines() if r.startswith("| full |")]
    assert len(rows) == 3 and rows[1].startswith("| full | 0.001 | 2 | 91.5 ± 6.4% | 86.5 ± 6.4%")
    assert rows[1].endswith("| **chosen**, hand-picked |") and "chosen" not in rows[0]
    assert (
        "**lora_r8_a16_qv**: best rate at the grid's edge (the highest, 0.03): widen the grid"
        in rates
    )
    assert "![accuracy against the learning rate](rates.png)" in rates
    assert (tmp_path / "rates.png").stat().st_size > 10_000
    # test at the chosen rates: full 86.5% (not the 96.5% that test would have picked at 1e-4)
    points = section(text, "Points (mean ± 95% CI over seeds)")
    assert "| 0.001 (chosen on val) |" in points and "| 86.5 ± 6.4% |" in points
    assert "96.5" not in points
    findings = section(text, "Findings")
    assert "full 0.001 (of 0.0001 to 0.003, 3 rates)" in findings
    assert "lora_r8_a16_qv 30x" in findings  # 3e-2 over 1e-3
    # hand-picked: LoRA 1e-2 (87.5) vs full 1e-3 (86.5): +1.0; chosen: 84.5 - 86.5 = -2.0
    assert "lora_r8_a16_qv better (+1.0), then worse (-2.0)" in findings
    # every run stays visible, at its own rate
    runs = section(text, "Runs (every run folder)")
    assert sum(line.startswith("| lora_r8_a16_qv |") for line in runs.splitlines()) == 6


def test_points_without_validation_keep_every_rate_as_a_point(tmp_path):
    for job, lr in enumerate((1e-3, 1e-2)):
        summary, overrides = rate_run("full", "full", lr, 1, 0.0, 0.8 + lr, 1e-3)
        summary["metrics"] = {"test/acc": 0.8 + lr}
        fake_run(tmp_path, job, summary, overrides=overrides)
    selection = select_rates(collect_runs(tmp_path), ACCURACY)
    assert [p.label for p in selection.points] == ["full @ lr 0.001", "full @ lr 0.01"]
    assert selection.searches[0].chosen is None


@pytest.mark.slow
def test_a_command_line_rate_grid_and_seeds_run_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(
        "loralab.train",
        "-m",
        "experiment=lr_fair",
        "hydra.sweeper.only=[full,lora_qv]",
        "hydra.sweeper.seeds=[1,2]",
        "hydra.sweeper.lr_factors=[1]",
        "+hydra.sweeper.lrs.full=[1e-4,1e-3]",
        "model.checkpoint=null",
        "debug=limit",
        "data.n_train=128",
        "data.n_val=64",
        "data.n_test=64",
        "~source",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        f"hydra.sweep.dir={sweep}",
    )
    summaries = [json.loads((sweep / str(i) / "summary.json").read_text()) for i in range(6)]
    assert [(s["run_name"], s["lr"], s["seed"]) for s in summaries] == [
        (name, lr, seed)
        for seed in (1, 2)
        for name, lr in (("full", 1e-4), ("full", 1e-3), ("lora_r8_a16_qv", 1e-2))
    ]
    text = build_report(sweep, probe="never").read_text()
    rates = section(text, "Learning rates: each point at its best rate on validation")
    assert sum(r.startswith("| full |") for r in rates.splitlines()) == 2
    assert "lora_r8_a16_qv" not in rates  # one rate: nothing to choose

"""Sweeps: the points sweeper's expansion, the experiments' points, and real `-m` sweeps
(a comparison with failing runs, an Optuna search, the joblib launcher) through the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import hydra
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from omegaconf import OmegaConf
from tests.conftest import TINY, compose_config, run_cli

from hydra_plugins.loralab_sweeper import isolated_launcher, optuna_sweeper
from hydra_plugins.loralab_sweeper.points_sweeper import (
    expand_points,
    repeat_over_seeds,
    select_points,
)
from loralab.lora import apply_adapter, count_parameters
from loralab.report import build_report
from loralab.run.resolvers import config_dir

SWEEP_EXPERIMENTS = ("lora_vs_full", "rank_sweep", "alpha_sweep", "targets_sweep")
QUIET = [*TINY, "debug=limit"]
REPORT_PLOTS = (
    "curves",
    "quality_vs_params",
    "trainable_params",
    "resources",
    "spectrum_full",
    "spectrum_lora",
    "subspace",
)


def test_points_times_grid_with_the_point_first():
    points = {"full": ["adapter=full"], "r8": ["adapter.rank=8", "adapter.alpha=16"]}
    grid = [["seed=1", "debug=limit"], ["seed=2", "debug=limit"]]
    assert expand_points(points, grid) == [
        ["adapter=full", "seed=1", "debug=limit"],
        ["adapter=full", "seed=2", "debug=limit"],
        ["adapter.rank=8", "adapter.alpha=16", "seed=1", "debug=limit"],
        ["adapter.rank=8", "adapter.alpha=16", "seed=2", "debug=limit"],
    ]
    assert expand_points({}, grid) == grid  # no points: the plain grid


def test_only_selects_points_in_the_experiments_order_and_rejects_unknown_names():
    points = {"full": ["adapter=full"], "r1": ["adapter.rank=1"], "r8": ["adapter.rank=8"]}
    assert list(select_points(points, ["r8", "full"])) == ["full", "r8"]
    assert select_points(points, None) == points
    with pytest.raises(HydraException, match="hydra.sweeper.only.*'r4'"):
        select_points(points, ["r4"])


def test_sweeper_parses_the_command_line_grid_and_batches_jobs():
    # Hydra's plugin scan (run by earlier tests) re-executes plugin modules; take the class
    # it registered, whose BasicSweeper base is the one hydra now uses
    from hydra.core.plugins import Plugins

    Plugins.instance()
    module = sys.modules["hydra_plugins.loralab_sweeper.points_sweeper"]
    sweeper = module.PointsSweeper(max_batch_size=3, points={"a": ["x=1"], "b": ["x=2"]})
    overrides = OverridesParser.create().parse_overrides(["seed=1,2", "debug=limit"])
    batches = sweeper.split_arguments(overrides, 3)
    assert [len(b) for b in batches] == [3, 1]
    assert batches[0][0] == ["x=1", "seed=1", "debug=limit"]
    assert batches[1][0] == ["x=2", "seed=2", "debug=limit"]


def test_seeds_repeat_every_job_seed_by_seed_unless_the_command_line_names_a_seed():
    jobs = [["adapter=full"], ["adapter.rank=8"]]
    parse = OverridesParser.create().parse_overrides
    assert repeat_over_seeds(jobs, [1, 2], parse(["debug=limit"])) == [
        ["adapter=full", "seed=1"],
        ["adapter.rank=8", "seed=1"],
        ["adapter=full", "seed=2"],
        ["adapter.rank=8", "seed=2"],
    ]
    # seed=7 or seed=1,2 on the command line: that is the user's choice of seeds
    assert repeat_over_seeds(jobs, [1, 2], parse(["seed=7"])) == jobs
    assert repeat_over_seeds(jobs, [1, 2], parse(["+seed=1,2"])) == jobs
    assert repeat_over_seeds(jobs, None, parse([])) == jobs


def test_sweeper_with_seeds_runs_every_point_per_seed():
    from hydra.core.plugins import Plugins

    Plugins.instance()
    module = sys.modules["hydra_plugins.loralab_sweeper.points_sweeper"]
    sweeper = module.PointsSweeper(
        max_batch_size=None, points={"a": ["x=1"], "b": ["x=2"]}, seeds=[1, 2, 3]
    )
    overrides = OverridesParser.create().parse_overrides(["debug=limit"])
    (jobs,) = sweeper.split_arguments(overrides, None)
    assert jobs == [[x, "debug=limit", f"seed={s}"] for s in (1, 2, 3) for x in ("x=1", "x=2")]


@pytest.mark.parametrize(
    "experiment", [*SWEEP_EXPERIMENTS, "variants_sweep", "charlm_lora_vs_full"]
)
def test_comparison_experiments_repeat_their_points_over_three_seeds(experiment):
    with hydra.initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra.compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    assert list(cfg.hydra.sweeper.seeds) == [1, 2, 3]


def sweep_points(experiment: str) -> dict[str, list[str]]:
    """The points an experiment's sweeper config lists."""
    with hydra.initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra.compose("train", [f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("PointsSweeper")
    return OmegaConf.to_container(cfg.hydra.sweeper.points)


@pytest.mark.parametrize("experiment", SWEEP_EXPERIMENTS)
def test_every_point_composes_with_one_data_seed_and_step_budget(experiment, tmp_path):
    points = sweep_points(experiment)
    assert "full" in points and len(points) >= 2
    budgets = set()
    for name, overrides in points.items():
        cfg = compose_config("train", [f"experiment={experiment}", *overrides], tmp_path)
        budgets.add((cfg.seed, cfg.data.n_train, cfg.trainer.max_epochs, cfg.trainer.max_steps))
        assert cfg.task_name == experiment
        assert cfg.adapter.name == ("full" if name == "full" else "lora")
        # LoRA learns with a ~10x higher learning rate than full fine-tuning
        assert cfg.adapter.lr == (1e-3 if name == "full" else 1e-2)
    assert len(budgets) == 1


def test_rank_sweep_lora_runs_up_to_rank_8_train_under_two_percent(tmp_path):
    points = sweep_points("rank_sweep")
    shares = {}
    for name in ("r1", "r2", "r4", "r8"):
        cfg = compose_config(
            "train", ["experiment=rank_sweep", *points[name], "model.checkpoint=null"], tmp_path
        )
        model = hydra.utils.instantiate(cfg.model)
        apply_adapter(model, cfg.adapter)
        shares[name] = count_parameters(model).percent
    assert all(share < 2.0 for share in shares.values()), shares


def test_lora_optuna_searches_rank_alpha_lr_and_targets_for_the_best_val_acc():
    with hydra.initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra.compose("train", ["hparams_search=lora_optuna"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("LoralabOptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert (sweeper.direction, sweeper.n_trials, sweeper.max_failure_rate) == ("maximize", 20, 1.0)
    assert set(sweeper.params) == {"adapter.rank", "adapter.alpha", "adapter.lr", "adapter.targets"}
    assert cfg.optimized_metric == "val/acc_best" and cfg.adapter.name == "lora"


def test_a_nan_return_becomes_a_failed_optuna_trial():
    finished = JobReturn(status=JobStatus.COMPLETED, _return_value=0.9)
    crashed = JobReturn(status=JobStatus.COMPLETED, _return_value=math.nan)
    optuna_sweeper.mark_nan_as_failed([finished, crashed])
    assert finished.return_value == 0.9
    assert crashed.status == JobStatus.FAILED
    # looked up at call time: Hydra's plugin scan re-executes plugin modules
    with pytest.raises(optuna_sweeper.FailedRunError):
        _ = crashed.return_value


def summaries(sweep: Path) -> list[dict]:
    run_dirs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [json.loads((p / "summary.json").read_text()) for p in run_dirs]


@pytest.mark.slow
def test_rank_sweep_over_two_seeds_with_failing_points_reports_every_run_and_point(
    tmp_path, pretrained_backbone
):
    sweep = tmp_path / "sweep"
    run_cli(
        "loralab.train",
        "-m",
        "experiment=rank_sweep",
        "hydra.sweeper.only=[full,r8,r32,bad_rank,diverges]",
        "hydra.sweeper.seeds=[1,2]",
        "+hydra.sweeper.points.bad_rank=['adapter.rank=0']",
        # a learning rate this large drives the loss to NaN within a step or two
        "+hydra.sweeper.points.diverges=['adapter.rank=2','adapter.lr=1e30']",
        f"model.checkpoint={pretrained_backbone}",
        f"hydra.sweep.dir={sweep}",
        *QUIET,
    )
    runs = summaries(sweep)
    # seed by seed: every point of seed 1, then every point of seed 2
    assert [s["status"] for s in runs] == (["completed"] * 3 + ["failed"] * 2) * 2
    assert [s["seed"] for s in runs if s["status"] == "completed"] == [1, 1, 1, 2, 2, 2]
    assert "adapter.rank" in runs[3]["error"] and "NonFiniteLoss" in runs[4]["error"]
    assert {"source/acc_start", "source/acc", "test/acc_start"} <= set(runs[0]["metrics"])

    text = build_report(sweep).read_text()
    rows = text.split("## Runs (every run folder)")[1].split("\n\n")[1].splitlines()[2:]
    assert len(rows) == 10 and sum(r.endswith("| failed |") for r in rows) == 4
    # two seeds per point: each LoRA point is paired with full fine-tuning twice
    differences = text.split("## Against full fine-tuning, paired by seed")[1].split("\n\n")[1]
    for name in ("lora_r8_a16_qv", "lora_r32_a64_qv"):
        line = next(r for r in differences.splitlines() if r.startswith(f"| {name} |"))
        assert line.startswith(f"| {name} | 2 | ") and "95% CI" in line
    for name in (*REPORT_PLOTS, "learning_vs_forgetting"):
        assert (sweep / f"{name}.png").is_file() and f"]({name}.png)" in text
    assert "## Forgetting" in text and "majority_group accuracy" in text
    assert (
        "phi(8, 32)" in text and "| q | 2 | " in text
    )  # per module kind; each module in ranks.csv
    assert "layers.0.attn.q_proj" in (sweep / "ranks.csv").read_text()
    # the interleaved probe rebuilt the three trained points from their checkpoints
    probe = json.loads((sweep / "probe.json").read_text())
    assert set(probe["results"]) == {"full", "lora_r8_a16_qv", "lora_r32_a64_qv"}
    assert all(
        r["step_ms"] > 0 and len(r["rounds_ms"]) == probe["rounds"]
        for r in probe["results"].values()
    )
    assert "probe: step (ms)" in text
    assert_hparams_logged(sweep / "0" / "tensorboard" / runs[0]["run_name"])


def assert_hparams_logged(event_dir: Path) -> None:
    """TensorBoard's HPARAMS tab data: the run's hyper-parameters and its final metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(event_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["adapter.name"].string_value == "full"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"test/acc", "val/acc_best"} <= metric_tags
    assert events.Scalars("test/acc")[-1].step > 0  # logged at the last step, not step 0


@pytest.mark.slow
def test_optuna_search_of_three_trials_survives_a_failed_trial(tmp_path, pretrained_backbone):
    sweep = tmp_path / "search"
    run_cli(
        "loralab.train",
        "-m",
        "hparams_search=lora_optuna",
        "hydra.sweeper.n_trials=3",
        # with this seed the sampler draws rank 2, 0, 0: the bad rank fails twice
        "hydra.sweeper.sampler.seed=0",
        "adapter.rank=choice(0,2)",
        f"model.checkpoint={pretrained_backbone}",
        f"hydra.sweep.dir={sweep}",
        "logger=[]",
        *QUIET,
    )
    statuses = [s["status"] for s in summaries(sweep)]
    assert len(statuses) == 3 and {"completed", "failed"} <= set(statuses), statuses
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_params["adapter.rank"] == 2 and 0 <= best.best_value <= 1


@pytest.mark.slow
def test_joblib_launcher_runs_two_jobs_in_parallel_processes(tmp_path, pretrained_backbone):
    sweep = tmp_path / "parallel"
    run_cli(
        "loralab.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "adapter.rank=1,4",
        f"model.checkpoint={pretrained_backbone}",
        f"hydra.sweep.dir={sweep}",
        "logger=[]",
        *QUIET,
    )
    runs = summaries(sweep)
    assert [(s["status"], s["rank"]) for s in runs] == [("completed", 1), ("completed", 4)]
    threads = isolated_launcher.threads_per_job(2)  # 1 on 2 cores
    for run in ("0", "1"):  # each run process trained with its share of the CPUs
        assert f"torch threads: {threads}\n" in (sweep / run / "train.log").read_text()


def test_threads_per_job_shares_the_cpus_out_among_the_runs(monkeypatch):
    monkeypatch.setattr(isolated_launcher.os, "sched_getaffinity", lambda pid: set(range(4)))
    assert isolated_launcher.threads_per_job(2) == 2
    assert isolated_launcher.threads_per_job(3) == 1
    assert isolated_launcher.threads_per_job(8) == 1
    assert isolated_launcher.threads_per_job(1) == 4
    assert isolated_launcher.threads_per_job(-1) == 1  # one run per CPU


def test_an_optuna_search_without_a_completed_trial_ends_without_optunas_error(monkeypatch):
    """Optuna has no best trial to save; FailedSweepExit then says that every run failed."""
    OptunaSweeper = optuna_sweeper.OptunaSweeper  # noqa: N806 - looked up at call time, as above

    def no_completed_trial(self, arguments):  # noqa: ANN001, ANN202
        raise ValueError("No trials are completed yet.")

    monkeypatch.setattr(OptunaSweeper, "sweep", no_completed_trial)
    sweeper = optuna_sweeper.LoralabOptunaSweeper.__new__(optuna_sweeper.LoralabOptunaSweeper)
    assert sweeper.sweep([]) is None

    def other_error(self, arguments):  # noqa: ANN001, ANN202
        raise ValueError("a bad search space")

    monkeypatch.setattr(OptunaSweeper, "sweep", other_error)
    with pytest.raises(ValueError, match="bad search space"):
        sweeper.sweep([])

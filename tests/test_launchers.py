"""Cluster sweeps through Hydra's submitit launcher: locally for real, SLURM by config."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from tests.conftest import run_cli

from loralab.run.resolvers import config_dir


def launcher_config(*overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


def test_slurm_jobs_are_sized_from_the_trainer_config():
    """One task and one GPU per device, on trainer.num_nodes nodes; cluster names from the CLI."""
    launcher = launcher_config(
        "hydra/launcher=submitit_slurm",
        "trainer=ddp",
        "trainer.devices=8",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=240",
    )
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min) == ("gpu", 240)
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (8, 8, 2)
    assert launcher_config("hydra/launcher=submitit_slurm", "trainer=gpu").nodes == 1


@pytest.mark.slow
def test_submitit_local_runs_a_two_run_sweep(tmp_path, pretrained_backbone):
    sweep = tmp_path / "sweep"
    run_cli(
        "loralab.train",
        "-m",
        "hydra/launcher=submitit_local",
        "adapter.rank=1,4",
        "debug=limit",
        "data.n_train=256",
        "logger=[]",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        f"model.checkpoint={pretrained_backbone}",
        f"hydra.sweep.dir={sweep}",
    )
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert [(s["status"], s["rank"]) for s in summaries] == [("completed", 1), ("completed", 4)]
    assert list((sweep / ".submitit").iterdir())  # the jobs ran through submitit

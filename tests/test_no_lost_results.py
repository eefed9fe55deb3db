"""Nothing a user has is replaced: run folders, completed summaries, backbone files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tests.conftest import compose_config

from loralab.errors import BackboneCheckpointError, ConfigError
from loralab.io import write_json
from loralab.run.cli import record_failure
from loralab.run.folder import check_fresh_folder, earlier_results
from loralab.run.resolvers import project_root
from loralab.train import train

QUIET = ["logger=[]", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]


def test_a_folder_with_results_is_refused_and_a_failed_start_is_not_a_result(tmp_path):
    check_fresh_folder(tmp_path, None)  # empty: fine
    write_json(tmp_path / "summary.json", {"status": "failed", "error": "ConfigError: ..."})
    assert earlier_results(tmp_path) == []  # it failed before training: nothing to keep
    check_fresh_folder(tmp_path, None)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"holds an earlier run \(checkpoints/\).*ckpt_path=last"):
        check_fresh_folder(tmp_path, None, "hydra.sweep.dir")
    check_fresh_folder(tmp_path, "last")  # resuming it is what the message asks for
    write_json(tmp_path / "summary.json", {"status": "completed"})
    assert earlier_results(tmp_path) == ["summary.json", "checkpoints/"]


def test_a_failure_never_replaces_a_completed_summary_and_records_lr_and_seed(tmp_path):
    cfg = compose_config("train", ["adapter.lr=0.05", "seed=7"], tmp_path)
    record_failure(cfg, ConfigError("adapter.rank: something"))
    failed = json.loads((tmp_path / "summary.json").read_text())
    assert (
        failed["status"] == "failed" and failed["error"] == "ConfigError: adapter.rank: something"
    )
    assert (failed["lr"], failed["seed"], failed["rank"]) == (0.05, 7, 8)

    completed = {"status": "completed", "metrics": {"test/acc": 0.92}}
    write_json(tmp_path / "summary.json", completed)
    before = (tmp_path / "summary.json").read_bytes()
    record_failure(cfg, ConfigError("ckpt_path: refused"))
    assert (tmp_path / "summary.json").read_bytes() == before


def pretrain_cfg(out: Path, *overrides: str):
    return compose_config(
        "train",
        ["experiment=pretrain", "data.n_train=256", "data.n_val=64", "data.n_test=64",
         *QUIET, f"paths.checkpoint_dir={out}", *overrides],
        out / "run",
    )  # fmt: skip


def test_a_backbone_file_is_replaced_only_with_overwrite_and_never_by_a_debug_run(tmp_path):
    base = tmp_path / "tiny_encoder.safetensors"  # where experiment=pretrain saves
    base.write_bytes(b"the pretrained base that adapters were trained on")
    before = base.read_bytes()
    with pytest.raises(BackboneCheckpointError, match="overwrite=true"):
        train(pretrain_cfg(tmp_path, "trainer.max_epochs=1"))
    assert not (tmp_path / "run").exists()  # refused before anything ran
    for i, debug in enumerate(["debug=fdr", "debug=limit", "++trainer.fast_dev_run=true"]):
        cfg = pretrain_cfg(tmp_path, debug)
        cfg.paths.output_dir = str(tmp_path / f"run-{i}")
        assert train(cfg) and base.read_bytes() == before, debug
    for fast_dev_run in (tmp_path / "run-0", tmp_path / "run-2"):  # no checkpoint at all
        assert not (fast_dev_run / "checkpoints").exists(), list(fast_dev_run.rglob("*"))


def test_pretrain_charlm_writes_its_tokenizer_only_with_its_backbone(tmp_path):
    cfg = compose_config("train", ["experiment=pretrain_charlm"], tmp_path)
    assert cfg.data.save_tokenizer == str(
        Path(cfg.paths.checkpoint_dir) / "tiny_gpt.tokenizer.json"
    )
    cfg = compose_config("train", ["experiment=pretrain_charlm", "debug=limit"], tmp_path)
    assert cfg.save_backbone is None and cfg.data.save_tokenizer is None
    OmegaConf.resolve(cfg)


def test_the_makefiles_dependency_rule_passes_overwrite_and_says_so():
    for target in ("checkpoints/tiny_encoder.safetensors", "checkpoints/tiny_gpt.safetensors"):
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", "-B", target],
            cwd=project_root(),
            capture_output=True,
            text=True,
        ).stdout
        assert "overwrite=true" in dry.splitlines()[-1], dry
        assert "pretraining again and replacing it (overwrite=true)" in dry
    dry = subprocess.run(["make", "--no-print-directory", "-n", "pretrain"], cwd=project_root(),
                         capture_output=True,
                         text=True).stdout  # fmt: skip
    assert "overwrite" not in dry.splitlines()[-1]  # make pretrain itself refuses


@pytest.mark.slow
def test_a_debug_run_writes_no_backbone_even_when_the_command_line_names_one(tmp_path):
    from tests.conftest import run_cli

    target = tmp_path / "new_base.safetensors"
    run_cli("loralab.train", "experiment=pretrain", "debug=fdr", f"save_backbone={target}",
            f"hydra.run.dir={tmp_path / 'run'}", *QUIET)  # fmt: skip
    assert not target.exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["backbone_bytes"] is None


def test_a_sweep_exits_non_zero_only_when_none_of_its_runs_completed(tmp_path, capsys):
    from loralab.run.cli import FailedSweepExit

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})

    def job(n: int, status: str | None) -> None:
        (tmp_path / str(n) / ".hydra").mkdir(parents=True)
        (tmp_path / str(n) / ".hydra" / "overrides.yaml").write_text("[]")
        if status:
            error = "MissingFileError: model.checkpoint: no pretrained backbone at x."
            write_json(tmp_path / str(n) / "summary.json", {"status": status, "error": error})

    callback = FailedSweepExit()
    callback.on_multirun_start(config)
    for n in range(2, 12):  # job 10 sorts after job 2: by number
        job(n, "failed")
    with pytest.raises(SystemExit) as stopped:
        callback.on_multirun_end(config)
    assert stopped.value.code == 1
    assert capsys.readouterr().err == (
        f"error: hydra.sweep.dir: every run of this sweep failed (10 of 10 in {tmp_path}; the "
        "first: model.checkpoint: no pretrained backbone at x); fix what it names and run "
        "the sweep again.\n"
    )
    job(12, "completed")
    callback.on_multirun_end(config)  # one completed run: the sweep succeeded
    FailedSweepExit(summary_file=None).on_multirun_end(config)  # switched off

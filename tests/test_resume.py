"""Crash-safe runs: atomic checkpoints, `ckpt_path=last`, exact resume after SIGKILL, and a
NaN loss that stops the run and leaves the last good checkpoint."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import load_file
from tests.conftest import compose_config, run_cli
from torch import nn

from loralab.callbacks.run_config import EmbedRunConfig
from loralab.errors import ConfigError
from loralab.keys import WALL_TIME_KEY
from loralab.run.cli import run_guarded
from loralab.run.resolvers import project_root
from loralab.run.resume import check_resume_config, resolve_ckpt_path
from loralab.tasks.classification import ClassificationTask
from loralab.train import train

QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "logger=[]",
]


def test_ckpt_path_last_is_the_newest_last_ckpt_of_the_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="hydra.run.dir"):
        resolve_ckpt_path("last", tmp_path)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    older, newer = folder / "last-v1.ckpt", folder / "last.ckpt"
    older.write_bytes(b"x")
    newer.write_bytes(b"x")
    os.utime(older, (time.time() + 60, time.time() + 60))
    assert resolve_ckpt_path("last", tmp_path) == str(older)
    assert resolve_ckpt_path(str(newer), "/elsewhere") == str(newer)
    assert resolve_ckpt_path(None, tmp_path) is None
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        resolve_ckpt_path(str(tmp_path / "absent.ckpt"), tmp_path)


def test_resuming_under_another_adapter_config_fails_in_one_sentence(train_cfg, tmp_path):
    saved = train_cfg("adapter.rank=8")
    path = tmp_path / "last.ckpt"
    from loralab.io import to_plain

    torch.save({"loralab_config": to_plain(saved)}, path)
    check_resume_config(str(path), train_cfg("adapter.rank=8", "trainer.max_epochs=3"))
    with pytest.raises(ConfigError, match=r"adapter\.rank \(8, now 4\).*adapter\.rank=8"):
        check_resume_config(str(path), train_cfg("adapter.rank=4"))


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(
    train_cfg, pretrained_backbone, monkeypatch
):
    """The third save dies half-way through its file; last.ckpt is still the second one."""
    original = TorchCheckpointIO.save_checkpoint
    calls = []

    def dying_save(self, checkpoint, path, storage_options=None):  # noqa: ANN001
        calls.append(path)
        if len(calls) == 3:
            Path(path).write_bytes(b"half a checkpoint")
            raise OSError("disk full")
        return original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", dying_save)
    cfg = train_cfg(
        f"model.checkpoint={pretrained_backbone}",
        "callbacks.step_checkpoint.every_n_train_steps=1",
        *QUIET,
    )
    with pytest.raises(OSError, match="disk full"):
        train(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]  # no stray temporary file
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 2


def test_nonfinite_loss_stops_the_run_naming_the_step(train_cfg, pretrained_backbone, capsys):
    """A diverging learning rate: the step's loss is NaN; last.ckpt keeps finite weights."""
    cfg = train_cfg(
        "adapter=full",
        "adapter.lr=1e6",
        f"model.checkpoint={pretrained_backbone}",
        "callbacks.step_checkpoint.every_n_train_steps=1",
        *QUIET,
    )
    with pytest.raises(SystemExit) as stopped:
        run_guarded(train, cfg)
    assert stopped.value.code == 1
    out = Path(cfg.paths.output_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"].startswith(
        "NonFiniteLossError: the training loss is nan at global step"
    )
    assert str(out / "checkpoints" / "last.ckpt") in summary["error"]
    step = int(summary["error"].split("global step ")[1].split(" ")[0])
    error_lines = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")
    ]
    assert len(error_lines) == 1 and "adapter.lr" in error_lines[0]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == step  # the update that produced the NaN loss never happened
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_ckpt_path_last_gives_the_uninterrupted_result(
    tmp_path, pretrained_backbone
):
    """Kill a real run with SIGKILL after its first mid-epoch last.ckpt, resume it in its own
    folder with ckpt_path=last, and compare with a run that was never interrupted.

    Weights, optimizer, schedule and data position are restored, so the trained adapter and
    every val/test metric are identical. (Epoch aggregates of train metrics are not: their
    running sums over the interrupted epoch's first part are not in the checkpoint.)
    """
    steps_per_epoch = 512 // 16
    overrides = [
        f"model.checkpoint={pretrained_backbone}",
        "data.n_train=512",
        "data.n_val=64",
        "data.n_test=64",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "callbacks.step_checkpoint.every_n_train_steps=8",
        *QUIET,
    ]
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    env = {**os.environ, "LORALAB_ROOT": project_root()}
    command = [sys.executable, "-m", "loralab.train", *overrides, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        command, cwd=project_root(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < steps_per_epoch and killed_at % 8 == 0  # a mid-epoch checkpoint
    assert not (run_dir / "summary.json").exists()

    run_cli("loralab.train", *overrides, "ckpt_path=last", f"hydra.run.dir={run_dir}")
    resumed = json.loads((run_dir / "summary.json").read_text())
    reference = train(compose_config("train", overrides, tmp_path / "reference"))

    assert resumed["status"] == "completed" and resumed["global_step"] == steps_per_epoch
    for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert resumed["metrics"][key] == pytest.approx(reference[key], abs=1e-6), key
    adapter = load_file(run_dir / "adapter.safetensors")
    expected = load_file(tmp_path / "reference" / "adapter.safetensors")
    assert adapter.keys() == expected.keys()
    for name, tensor in adapter.items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6)


def test_a_resumed_run_keeps_the_best_val_acc_of_its_first_part():
    def task() -> ClassificationTask:
        optimizer = functools.partial(torch.optim.AdamW, lr=1e-3)
        return ClassificationTask(nn.Linear(4, 2), num_classes=2, optimizer=optimizer)

    first = task()
    early = {"state_dict": first.state_dict()}
    first.on_save_checkpoint(early)  # before any validation: no best to keep
    assert "val_acc_best" not in early
    first.on_train_start()
    for acc in (0.9, 0.7):  # two validations, the first the best
        first.val_acc_best(torch.tensor(acc))
    checkpoint = {"state_dict": first.state_dict()}
    first.on_save_checkpoint(checkpoint)
    assert checkpoint["val_acc_best"] == pytest.approx(0.9)

    resumed = task()
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_train_start()
    resumed.val_acc_best(torch.tensor(0.8))  # the resumed part's validation
    assert float(resumed.val_acc_best.compute()) == pytest.approx(0.9)

    fresh = task()
    fresh.on_train_start()
    fresh.val_acc_best(torch.tensor(0.8))
    assert float(fresh.val_acc_best.compute()) == pytest.approx(0.8)


def process_writing(parent: int, log_file: Path) -> int | None:
    """The pid of the process under `parent` that has `log_file` open (a run's train.log)."""
    import psutil

    for child in psutil.Process(parent).children(recursive=True):
        try:
            if any(Path(f.path) == log_file for f in child.open_files()):
                return child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


@pytest.mark.slow
def test_a_run_killed_in_a_parallel_sweep_dies_alone_and_resumes_to_the_same_metrics(tmp_path):
    """Two identical runs (only run_name differs) in a joblib sweep, n_jobs=2; run 0 is killed
    with SIGKILL mid-epoch. Run 1 completes, the sweep goes on and exits 0, run 0 is recorded as
    killed, and `ckpt_path=last` in its folder ends with run 1's metrics and adapter."""
    overrides = [
        "model.checkpoint=null",  # a seeded random base: no pretraining needed
        "data.n_train=192",
        "data.n_val=32",
        "data.n_test=32",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "callbacks.step_checkpoint.every_n_train_steps=2",
        *QUIET,
    ]
    sweep = tmp_path / "sweep"
    killed_dir, other_dir = sweep / "0", sweep / "1"
    last = killed_dir / "checkpoints" / "last.ckpt"
    env = {**os.environ, "LORALAB_ROOT": project_root(), "OMP_WAIT_POLICY": "PASSIVE"}
    command = [
        sys.executable, "-m", "loralab.train", "-m", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", "run_name=killed,reference", *overrides,
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    sweep_proc = subprocess.Popen(
        command, cwd=project_root(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not last.exists() and sweep_proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run = process_writing(sweep_proc.pid, killed_dir / "train.log")
    assert run is not None and run != sweep_proc.pid, "no process of its own for run 0"
    os.kill(run, signal.SIGKILL)
    _, stderr = sweep_proc.communicate(timeout=300)
    assert sweep_proc.returncode == 0, stderr[-3000:]

    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < 192 // 16  # mid-epoch
    first_part_s = torch.load(last, weights_only=True)[WALL_TIME_KEY]
    failed = json.loads((killed_dir / "summary.json").read_text())
    assert failed["status"] == "failed" and "killed (SIGKILL)" in failed["error"]
    assert f"ckpt_path=last hydra.run.dir={killed_dir}" in failed["error"]
    reference = json.loads((other_dir / "summary.json").read_text())
    assert reference["status"] == "completed" and reference["global_step"] == 192 // 16

    started = time.monotonic()
    run_cli("loralab.train", *overrides, "run_name=killed", "ckpt_path=last",
            f"hydra.run.dir={killed_dir}")  # fmt: skip
    second_part_s = time.monotonic() - started
    resumed = json.loads((killed_dir / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["global_step"] == 192 // 16
    # the wall time covers both parts: the first up to its last checkpoint, and the resume
    assert first_part_s < resumed["wall_time_s"] < first_part_s + second_part_s
    for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert resumed["metrics"][key] == pytest.approx(reference["metrics"][key], abs=1e-6), key
    adapter = load_file(killed_dir / "adapter.safetensors")
    expected = load_file(other_dir / "adapter.safetensors")
    assert adapter.keys() == expected.keys()
    for name, tensor in adapter.items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6)


def test_the_wall_time_in_checkpoints_adds_up_over_resumed_parts():
    first = EmbedRunConfig({"seed": 1}, started=time.perf_counter() - 30)  # 30 s in
    checkpoint: dict = {}
    first.on_save_checkpoint(None, None, checkpoint)
    assert checkpoint["loralab_config"] == {"seed": 1} and "loralab_base" not in checkpoint
    assert 30 <= checkpoint[WALL_TIME_KEY] < 31

    fitting, testing = (SimpleNamespace(state=SimpleNamespace(fn=fn)) for fn in ("fit", "test"))
    resumed = EmbedRunConfig({"seed": 1}, {"digest": "d", "tensors": {}}, time.perf_counter() - 5)
    resumed.on_load_checkpoint(fitting, None, checkpoint)
    assert 35 <= resumed.wall_time_s() < 36  # 30 s before the kill's checkpoint + 5 s since
    resumed.on_load_checkpoint(testing, None, {WALL_TIME_KEY: 1000.0})  # trainer.test(best)
    assert 35 <= resumed.wall_time_s() < 36
    again: dict = {}
    resumed.on_save_checkpoint(None, None, again)
    assert again["loralab_base"] == {"digest": "d", "tensors": {}}

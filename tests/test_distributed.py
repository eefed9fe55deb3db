"""The distributed path on CPU: DDP over gloo (trainer=ddp_sim), one run folder per run, and
the same numbers as one process with the same global batch."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from tests.conftest import compose_config, run_cli
from torch.nn.parallel import DistributedDataParallel

from loralab.eval import evaluate
from loralab.lora import apply_adapter
from loralab.models import TransformerEncoderClassifier
from loralab.run import distributed
from loralab.run.resolvers import config_dir
from loralab.train import train

QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]
DATA = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "trainer.max_epochs=1"]
COMPARED = ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss_epoch")


def test_ddp_registers_and_reduces_only_the_trainable_tensors():
    """Frozen base weights are not DDP parameters at all: only adapters and head sync."""
    model = TransformerEncoderClassifier(
        vocab_size=64, num_classes=2, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=16
    )
    lora = dict(name="lora", rank=4, alpha=8, dropout=0.0, init="kaiming", lr=1e-2)
    apply_adapter(
        model,
        OmegaConf.create({**lora, "targets": ["q_proj", "v_proj"], "trainable": ["classifier"]}),
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model, find_unused_parameters=False)
        for _ in range(2):  # an unused registered parameter would fail on the second step
            ids = torch.randint(1, 64, (4, 8))
            ddp(input_ids=ids, attention_mask=torch.ones(4, 8, dtype=torch.bool)).sum().backward()
        logged = ddp._get_ddp_logging_data()
    finally:
        dist.destroy_process_group()
    assert logged["num_parameter_tensors"] == len(trainable) == 2 * 2 * 2 + 2
    assert logged["total_parameter_size_bytes"] == sum(p.numel() * 4 for p in trainable)
    assert logged["unused_parameter_size"] == 0


def test_extra_processes_rerun_this_job_only(tmp_path, monkeypatch):
    """In a sweep, rank 1 runs job 1's overrides as a single run in job 1's folder."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", ["trainer=ddp_sim", "adapter.rank=4"], return_hydra_config=True)
    job_dir = tmp_path / "multiruns" / "t" / "1"
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(job_dir)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.name = "train"
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # restored after the test
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(distributed, "entry_module", lambda: "loralab.train")
    command, cwd = distributed.child_command(local_rank=1)
    assert command[1:4] == ["-m", "loralab.train", "--config-name=train"]
    assert "--multirun" not in command and command.count("-m") == 1
    assert ["trainer=ddp_sim", "adapter.rank=4"] == command[4:6]
    assert f"hydra.run.dir={job_dir}" in command and "hydra.output_subdir=null" in command
    assert cwd == str(tmp_path)


@pytest.mark.parametrize("trainer", ["ddp", "ddp_sim", "fsdp"])
def test_strategy_configs_build(trainer, tmp_path):
    """GPU strategies can't run here; their configs still build real Lightning strategies."""
    strategy = hydra.utils.instantiate(
        compose_config("train", [f"trainer={trainer}"], tmp_path).trainer.strategy
    )
    assert isinstance(strategy, (distributed.HydraDDPStrategy, distributed.HydraFSDPStrategy))
    if trainer == "fsdp":  # LoRA needs frozen and trainable tensors in one FSDP unit
        assert strategy.kwargs["use_orig_params"] is True


PERF_TAGS = {"perf/step_time_ms", "perf/samples_per_s", "perf/tokens_per_s", "perf/peak_memory_mib"}


def tensorboard_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # fit, test and the final hparams may each open an event file: read the run's folder
    (folder,) = run_dir.glob("tensorboard/*/")
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_ddp_sim_sweep_matches_one_process_and_makes_one_folder(tmp_path, pretrained_backbone):
    """2 processes x batch 16 = 1 process x batch 32: identical global batches, same metrics."""
    logs = tmp_path / "logs"
    base = [f"model.checkpoint={pretrained_backbone}", *DATA, *QUIET]
    run_cli(
        "loralab.train",
        "-m",
        "adapter=lora,full",
        "trainer=ddp_sim",
        "data.batch_size=16",
        f"paths.log_dir={logs}",
        *base,
    )
    base.append("logger=[]")
    sweeps = list((logs / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps  # no extra sweep (or run) folder from the second process
    assert not (logs / "train" / "runs").exists()
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]

    for job, adapter in zip(jobs, ("lora", "full"), strict=True):
        ddp = _summary(sweeps[0] / job)
        assert ddp["status"] == "completed" and ddp["adapter"] == adapter
        single = train(
            compose_config(
                "train", [f"adapter={adapter}", "data.batch_size=32", *base], tmp_path / adapter
            )
        )
        for key in COMPARED:
            assert ddp["metrics"][key] == pytest.approx(single[key], abs=1e-4), key
        assert ddp["samples_per_s"] > 0 and ddp["step_time_ms"] > 0
        assert PERF_TAGS <= tensorboard_tags(sweeps[0] / job)  # measured cost, logged by rank 0

    # the adapter-only checkpoint of the DDP run evaluates in one process
    best = _summary(sweeps[0] / "0")["checkpoint_path"]
    evaluated = evaluate(compose_config("eval", [f"ckpt_path={best}"], tmp_path / "eval"))
    assert evaluated["test/acc"] == pytest.approx(
        _summary(sweeps[0] / "0")["metrics"]["test/acc"], abs=1e-6
    )

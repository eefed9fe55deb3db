"""Config checks before anything is built: unknown keys, learning rates, missing devices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.conftest import compose_config
from tests.test_sweeps import SWEEP_EXPERIMENTS, sweep_points

from loralab.errors import ConfigError
from loralab.run.checks import check_devices, check_run_config
from loralab.run.resolvers import config_dir

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


def every_shipped_config() -> list[list[str]]:
    """Each experiment (each point of a sweep experiment), each model, data and trainer."""
    configs = [[f"experiment={name}"] for name in EXPERIMENTS]
    for name in SWEEP_EXPERIMENTS:
        configs += [[f"experiment={name}", *point] for point in sweep_points(name).values()]
    configs += [["model=minilm", "data=text_csv"], ["data=hf_dataset", "model=minilm"]]
    configs += [["hparams_search=lora_optuna"], ["trainer=ddp_sim"], ["trainer=cpu"]]
    return configs


def test_every_shipped_config_passes_the_checks(tmp_path):
    for overrides in every_shipped_config():
        cfg = compose_config("train", overrides, tmp_path)
        check_run_config(cfg)
        check_devices(cfg.trainer)
    check_devices(compose_config("eval", ["ckpt_path=x"], tmp_path).trainer)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+data.n_trian=100", r"data\.n_trian is not a setting of loralab\.data\.CharText"),
        ("+data.n_trian=100", r"; did you mean data\.n_train\?$"),
        (
            "+model.net.d_modle=64",
            r"model\.net\.d_modle .*TinyGPT .*did you mean model\.net\.d_model\?",
        ),
        ("+model.zzz=1", r"model\.zzz is not a setting of loralab\.models\.build_backbone"),
        ("+task.optimizer.lrr=1", r"task\.optimizer\.lrr is not a setting of torch\.optim\.AdamW"),
        ("adapter.lr=-1", r"^adapter\.lr=-1 is not a learning rate: it must be a number > 0"),
        ("adapter.lr=0", r"^adapter\.lr=0 is not a learning rate"),
        ("task.optimizer.lr=0.0", r"^task\.optimizer\.lr=0\.0 is not a learning rate"),
    ],
)
def test_bad_keys_and_learning_rates_fail_in_one_sentence(tmp_path, override, message):
    # char_text: the synthetic data module takes any rule setting (**rule_kwargs)
    cfg = compose_config("train", ["data=char_text", "model=tiny_gpt", override], tmp_path)
    with pytest.raises(ConfigError, match=message):
        check_run_config(cfg)


def test_the_trainers_keys_are_checked_and_documented_ones_pass(tmp_path):
    check_devices(compose_config("train", ["++trainer.fast_dev_run=true"], tmp_path).trainer)
    check_devices(compose_config("train", ["+trainer.accumulate_grad_batches=2"], tmp_path).trainer)
    with pytest.raises(ConfigError, match=r"trainer\.max_epoch .*did you mean trainer\.max_epochs"):
        check_devices(compose_config("train", ["+trainer.max_epoch=3"], tmp_path).trainer)


@no_gpu
@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (
            "gpu",
            r"trainer\.accelerator=gpu needs a GPU and this machine has none .*; use trainer=cpu\.$",
        ),
        ("ddp", r"trainer\.accelerator=gpu needs a GPU .*; use trainer=ddp_sim \(DDP over CPU"),
        ("fsdp", r"needs a GPU .*; use trainer=ddp_sim"),
    ],
)
def test_a_gpu_trainer_on_a_cpu_machine_names_the_cpu_trainer(tmp_path, trainer, message):
    with pytest.raises(ConfigError, match=message):
        check_devices(compose_config("train", [f"trainer={trainer}"], tmp_path).trainer)


@no_gpu
def test_nccl_on_cpu_names_gloo(tmp_path):
    cfg = compose_config(
        "train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"], tmp_path
    )
    with pytest.raises(ConfigError, match=r"process_group_backend=nccl needs CUDA .*ddp_sim"):
        check_devices(cfg.trainer)

"""Every option of every config group composes, and its `_target_`s point at real code."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf
from tests.conftest import compose_config

from loralab.lora import apply_adapter
from loralab.run.resolvers import config_dir, run_name

GROUPS = [
    "data",
    "model",
    "adapter",
    "task",
    "trainer",
    "logger",
    "callbacks",
    "debug",
    "experiment",
]


# options that need a matching choice of another group (char data needs a language model)
COMPANIONS = {
    "data=char_text": ["model=tiny_gpt", "task=language_modeling"],
    "data=lm_text": ["model=smollm2", "task=language_modeling"],
    "data=instruct": ["model=smollm2", "task=language_modeling"],
    # real prose (data/real_texts.py): characters for TinyGPT, tokens for SmolLM2
    "data=shakespeare_chars": ["model=tiny_gpt", "task=language_modeling"],
    "data=shakespeare": ["model=smollm2", "task=language_modeling"],
    # the real question sets (data/bundled/real_qa.py) are instruct data too
    **{
        f"data={qa}": ["model=smollm2", "task=language_modeling"]
        for qa in ("asdiv", "quartz", "logiqa", "nq_open", "boolq")
    },
    "model=smollm2": ["data=instruct", "task=language_modeling"],
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def with_companions(choice: str) -> list[str]:
    return [choice, *COMPANIONS.get(choice, [])]


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in options(g)], ids=lambda x: str(x)
)
def test_every_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose_config("train", with_companions(f"{group}={option}"), tmp_path)
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["run_name"]


def test_required_options_exist():
    assert {"full", "lora"} <= set(options("adapter"))
    assert {"default", "cpu", "gpu", "ddp", "ddp_sim"} <= set(options("trainer"))
    assert {"tensorboard", "csv"} <= set(options("logger"))
    assert {"fdr", "limit", "overfit"} <= set(options("debug"))


@pytest.mark.parametrize("data", options("data"))
def test_data_options_build_and_agree_on_num_classes(data, tmp_path):
    sizes = ["data.n_train=64", "data.n_val=32", "data.n_test=32"]
    cfg = compose_config("train", [*with_companions(f"data={data}"), *sizes], tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    # a language model's labels are next-token ids: it classifies over the vocabulary
    n_classes = cfg.data.num_classes if "num_classes" in cfg.data else datamodule.vocab_size
    assert int(batch["labels"].max()) < n_classes


@pytest.mark.parametrize("adapter", options("adapter"))
def test_adapter_options_apply_to_the_default_backbone(adapter, tmp_path):
    cfg = compose_config("train", [f"adapter={adapter}", "model.checkpoint=null"], tmp_path)
    backbone = hydra.utils.instantiate(cfg.model)
    report = apply_adapter(backbone, cfg.adapter)
    assert report.trainable > 0


def test_run_names_say_what_a_run_is():
    assert run_name({"name": "full", "lr": 1e-3}) == "full"
    assert run_name({"name": "lora", "rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}) == (
        "lora_r8_a16_qv"
    )
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"]
    assert run_name({"name": "lora", "rank": 4, "alpha": 8, "targets": targets}) == (
        "lora_r4_a8_qkvo-fc1-fc2"
    )
    assert run_name({"name": "lora", "rank": 2, "alpha": 0.5, "targets": "all-linear"}) == (
        "lora_r2_a0.5_all"
    )

"""Named adapters on one base: same outputs as single-adapter models, no base weight copied."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from tests.adapter_models import adapter_cfg, pretend_trained, tiny_backbone, token_batch
from tests.conftest import TINY, compose_config

from loralab.data.synthetic import group_bounds, group_counts, make_token_dataset
from loralab.lora import (
    AdapterConfigError,
    MultiAdapterModel,
    adapter_state_dict,
    apply_adapter,
    load_adapter_tensors,
    lora_layers,
    save_adapter,
)

CONFIGS = {
    "solver": adapter_cfg(),
    "critic": adapter_cfg(name="dora", rank=2, alpha=2, targets=["k_proj", "fc2"]),
}


def two_adapters() -> tuple[MultiAdapterModel, dict[str, dict[str, torch.Tensor]]]:
    """Both adapters added and 'trained'; returns each one's tensors as a single model holds them."""
    adapters = MultiAdapterModel(tiny_backbone())
    states = {}
    for seed, (name, cfg) in enumerate(CONFIGS.items()):
        # a Hydra config works as well as a dict (and is saved with the adapter as plain JSON)
        adapters.add_adapter(name, OmegaConf.create(cfg) if name == "critic" else cfg)
        with adapters.using(name) as model:
            pretend_trained(model, seed=seed)
            states[name] = adapter_state_dict(model)
    return adapters, states


def single_adapter_model(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = tiny_backbone()
    apply_adapter(model, CONFIGS[name])
    load_adapter_tensors(model, state, f"{name} state")
    return model


def base_storage(model: torch.nn.Module) -> dict[str, int]:
    """Where each frozen base tensor lives in memory, by its base-model name."""
    names = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            names[name.replace(".base.", ".")] = param.data_ptr()
    return names


def test_outputs_with_an_adapter_active_equal_the_single_adapter_model() -> None:
    adapters, states = two_adapters()
    x = token_batch()
    for name in ["solver", "critic", "solver"]:  # switch back and forth
        adapters.set_adapter(name)
        expected = single_adapter_model(name, states[name])(x)
        torch.testing.assert_close(adapters.model(x), expected, atol=1e-6, rtol=0)
        assert adapters.active == name
    outputs = {}
    for name in CONFIGS:
        with adapters.using(name) as model:
            outputs[name] = model(x)
    assert (outputs["solver"] - outputs["critic"]).abs().max() > 1e-3


def test_switching_never_copies_the_base_weights() -> None:
    adapters, _ = two_adapters()
    with adapters.disable_adapters() as bare:
        before = base_storage(bare)
        base_q = bare.layers[0].attn.q_proj
    for name in ["solver", "critic", "solver"]:
        adapters.set_adapter(name)
        storage = base_storage(adapters.model)
        assert {k: storage[k] for k in before if k in storage} == {
            k: before[k] for k in before if k in storage
        }
    # the wrapper holds the very module the bare base has: nothing was reloaded or cloned
    assert adapters.model.layers[0].attn.q_proj.base is base_q


def test_disable_adapters_gives_the_bare_base_and_restores_the_active_one() -> None:
    bare_output = tiny_backbone()(token_batch())
    adapters, _ = two_adapters()
    adapters.set_adapter("critic")
    with adapters.disable_adapters() as model:
        assert adapters.active is None
        assert not any(True for _ in lora_layers(model))
        torch.testing.assert_close(model(token_batch()), bare_output, atol=0, rtol=0)
    assert adapters.active == "critic"
    assert sum(1 for _ in lora_layers(adapters.model)) == 4


def test_each_adapter_trains_its_own_head_and_only_its_tensors() -> None:
    adapters, _ = two_adapters()
    heads = {}
    for name in CONFIGS:
        adapters.set_adapter(name)
        heads[name] = adapters.model.classifier
        trainable = {n for n, p in adapters.model.named_parameters() if p.requires_grad}
        assert trainable == set(adapter_state_dict(adapters.model))
        assert all("lora_" in n or n.startswith("classifier.") for n in trainable)
    assert heads["solver"] is not heads["critic"]
    assert not torch.equal(heads["solver"].weight, heads["critic"].weight)
    with adapters.disable_adapters() as bare:
        assert not any(p.requires_grad for p in bare.parameters())


def test_adapters_save_and_load_by_name(tmp_path: Path) -> None:
    adapters, _ = two_adapters()
    x = token_batch()
    expected = {}
    for name in CONFIGS:
        adapters.save_adapter(name, tmp_path / f"{name}.safetensors")
        with adapters.using(name) as model:
            expected[name] = model(x)
    fresh = MultiAdapterModel(tiny_backbone())
    for name in ["critic", "solver"]:
        fresh.load_adapter(name, tmp_path / f"{name}.safetensors")
    assert fresh.active is None and list(fresh) == ["critic", "solver"]
    for name in CONFIGS:
        with fresh.using(name) as model:
            torch.testing.assert_close(model(x), expected[name], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (adapter_cfg(init="pissa"), "adapter.init=pissa"),
        (adapter_cfg(quant="nf4"), "adapter.quant"),
        ({"name": "full"}, "adapter.name=full"),
        (CONFIGS["solver"], "exists already"),
    ],
)
def test_adapters_that_would_change_the_shared_base_are_refused(cfg: dict, message: str) -> None:
    adapters = MultiAdapterModel(tiny_backbone())
    adapters.add_adapter("solver", CONFIGS["solver"])
    before = copy.deepcopy(adapters.model.state_dict())
    with pytest.raises(AdapterConfigError, match=message):
        adapters.add_adapter("solver" if message == "exists already" else "other", cfg)
    after = adapters.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(AdapterConfigError, match="no adapter named 'ghost'"):
        adapters.set_adapter("ghost")


def test_group_parity_labels_are_the_parity_of_the_dominant_group() -> None:
    ids, mask, labels = make_token_dataset("group_parity", 200, 64, 24, seed=3, n_groups=8)
    counts = group_counts(ids, mask, group_bounds(64, 8))
    assert torch.equal(labels, counts.argmax(dim=1) % 2)
    assert 0.3 < labels.float().mean() < 0.7


@pytest.mark.slow
def test_the_two_task_example_reports_every_task_with_every_adapter(tmp_path, capsys) -> None:
    from loralab.multi_adapter import accuracy, run

    overrides = [*TINY, "logger=[]", "model.checkpoint=null", "data.n_train=128"]
    cfg = compose_config("multi_adapter", overrides, tmp_path)
    own = run(cfg)
    table = json.loads((tmp_path / "multi_adapter.json").read_text())["test_acc"]
    assert set(table) == {"low_high", "group_parity"}
    for row in table.values():
        assert set(row) == {"low_high", "group_parity", "none"}
        assert all(0.0 <= acc <= 1.0 for acc in row.values())
    assert own == {f"{task}/test_acc": table[task][task] for task in table}
    printed = capsys.readouterr().out
    assert "task \\ adapter" in printed and f"{table['low_high']['none']:.3f}" in printed
    # each saved adapter, loaded by name onto the same base rebuilt, reproduces its accuracy
    L.seed_everything(cfg.seed)
    fresh = MultiAdapterModel(hydra.utils.instantiate(cfg.model))
    for task, rule in cfg.tasks.items():
        fresh.load_adapter(task, tmp_path / f"{task}.safetensors")
        datamodule = hydra.utils.instantiate(cfg.data, rule=rule)
        datamodule.setup("test")
        with fresh.using(task) as model:
            assert accuracy(model, datamodule.test_dataloader()) == table[task][task]


def test_a_failed_load_leaves_no_half_built_adapter(tmp_path: Path) -> None:
    """The file's config builds rank-2 layers, its tensors are rank 4: the copy fails."""
    source = MultiAdapterModel(tiny_backbone())
    source.add_adapter("solver", CONFIGS["solver"])
    with source.using("solver") as model:
        save_adapter(
            tmp_path / "broken.safetensors",
            model,
            {"adapter": {**CONFIGS["solver"], "rank": 2}},
            base=source.base_of("solver"),
        )
    adapters = MultiAdapterModel(tiny_backbone())
    adapters.add_adapter("critic", CONFIGS["critic"])
    modules = {name: id(module) for name, module in adapters.model.named_modules()}
    with pytest.raises(AdapterConfigError, match="has shape"):
        adapters.load_adapter("broken", tmp_path / "broken.safetensors")
    assert list(adapters) == ["critic"] and adapters.active is None
    assert {name: id(module) for name, module in adapters.model.named_modules()} == modules
    with adapters.disable_adapters() as bare:
        assert not any(True for _ in lora_layers(bare))
    adapters.set_adapter("critic")  # the other adapter is untouched

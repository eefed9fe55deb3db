"""LoRA-FA (`adapter=lora_fa`): A stays at its random init, only B trains, and everything
else (forward, merge, adapter files, the PEFT export, the memory planner) still works."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import load_file
from tests.adapter_models import adapter_cfg, pretend_trained, tiny_backbone, token_batch
from tests.test_memory_planner import tiny_encoder_of

from loralab.lora import (
    AdapterConfigError,
    apply_adapter,
    count_parameters,
    export_peft,
    load_adapter,
    lora_layers,
    save_adapter,
)
from loralab.measure.merge_diff import max_merge_diff
from loralab.measure.planner import Method, Workload, estimate
from loralab.measure.step import measure_step_memory
from loralab.memory import PRESETS, llama_shape, main, shape_from_model_config
from loralab.run.builder import load_run
from loralab.run.resolvers import run_name
from loralab.tasks.optim import trainable_parameters


def fa_model(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A tiny base and a LoRA-FA copy of it, A drawn under `seed`."""
    base = tiny_backbone()
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    apply_adapter(model, adapter_cfg(freeze_a=True))
    return base.eval(), model


def test_training_steps_change_b_and_leave_a_at_its_init() -> None:
    _, model = fa_model()
    layers = dict(lora_layers(model))
    initial_a = {name: layer.lora_A.detach().clone() for name, layer in layers.items()}
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-2)
    x, labels = token_batch(), torch.tensor([0, 1, 2, 1])
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()
    for name, layer in layers.items():
        assert torch.equal(layer.lora_A, initial_a[name]) and layer.lora_A.grad is None
        assert layer.lora_B.abs().max() > 0  # B left its zero init


def test_at_step_0_it_is_plain_lora_with_the_same_tensors_and_outputs() -> None:
    base, fa = fa_model(seed=3)
    plain = copy.deepcopy(base)
    torch.manual_seed(3)
    apply_adapter(plain, adapter_cfg())
    x = token_batch()
    with torch.no_grad():
        assert torch.equal(fa.eval()(x), base(x)) and torch.equal(plain.eval()(x), base(x))
    fa_state, plain_state = fa.state_dict(), plain.state_dict()
    assert fa_state.keys() == plain_state.keys()
    assert all(torch.equal(fa_state[k], plain_state[k]) for k in fa_state)
    # same tensors, same outputs after any update of B: the forward is plain LoRA's
    pretend_trained(fa)
    plain.load_state_dict(fa.state_dict())
    with torch.no_grad():
        assert torch.equal(fa(x), plain(x))


def test_only_b_and_the_head_train() -> None:
    _, model = fa_model()
    layers = [layer for _, layer in lora_layers(model)]
    b_numbers = sum(layer.lora_B.numel() for layer in layers)
    a_numbers = sum(layer.lora_A.numel() for layer in layers)
    head = sum(p.numel() for p in model.classifier.parameters())
    assert count_parameters(model).trainable == b_numbers + head
    plain = tiny_backbone()
    report = apply_adapter(plain, adapter_cfg())
    assert report.trainable - count_parameters(model).trainable == a_numbers > 0
    assert count_parameters(model).total == report.total  # A still counts as a parameter


def test_merge_is_exact_and_the_adapter_file_carries_the_frozen_a(tmp_path) -> None:
    _, model = fa_model(seed=1)
    pretend_trained(model)
    x = token_batch()
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, {"adapter": adapter_cfg(freeze_a=True)})
    _, fresh = fa_model(seed=2)  # another random A, replaced by the file's
    load_adapter(path, fresh)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))
    assert max_merge_diff(model, x) < 1e-5


def test_peft_loads_the_export_as_plain_lora_with_the_same_outputs(tmp_path) -> None:
    peft = pytest.importorskip("peft")
    base, model = fa_model()
    pretend_trained(model)
    export_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and not config.get("use_dora")
    peft_model = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    x = token_batch()
    with torch.no_grad():
        assert (peft_model(x) - model.eval()(x)).abs().max() < 1e-5


def test_every_layer_type_takes_it_equal_at_init_and_merging_exactly() -> None:
    from tests.test_layer_types import IDS, TYPES, all_types

    base = all_types()
    model = copy.deepcopy(base)
    cfg = {"name": "lora", "rank": 2, "alpha": 4, "targets": list(TYPES.values())}
    apply_adapter(model, {**cfg, "trainable": [], "freeze_a": True})
    layers = dict(lora_layers(model))
    assert set(layers) == set(TYPES.values())
    assert not any(layer.lora_A.requires_grad for layer in layers.values())
    with torch.no_grad():
        assert torch.equal(model(IDS), base(IDS))
    pretend_trained(model)
    assert max_merge_diff(model, IDS) < 1e-5


def test_run_name_config_and_a_bad_value() -> None:
    cfg = OmegaConf.load("configs/adapter/lora_fa.yaml")
    assert cfg.freeze_a is True
    assert run_name(adapter_cfg(freeze_a=True)) == "lora-fa_r4_a8_qv-fc1"
    assert run_name(adapter_cfg(freeze_a=False)) == "lora_r4_a8_qv-fc1"
    with pytest.raises(AdapterConfigError, match="adapter.freeze_a must be one of false, true"):
        apply_adapter(tiny_backbone(), adapter_cfg(freeze_a="yes"))
    with pytest.raises(AdapterConfigError, match="adapter.freeze_a must be true or false"):
        apply_adapter(tiny_backbone(), adapter_cfg(freeze_a=1))  # 1 == True, yet a typo


def test_the_planner_gives_it_fewer_trainable_bytes_and_no_a_inputs() -> None:
    shape = llama_shape("Llama-2-7b", **PRESETS["7b"])
    workload = Workload(1, 512, "bf16")
    lora = estimate(shape, workload, Method("lora", rank=8, train_head=False))
    fa = estimate(shape, workload, Method("lora_fa", rank=8, train_head=False))
    assert lora.trainable_params == 32 * 2 * 8 * (4096 + 4096)
    assert fa.trainable_params == 32 * 2 * 8 * 4096  # B only: r x out per q and v
    assert fa.gradients == lora.gradients / 2 and fa.optimizer == lora.optimizer / 2
    assert fa.weights == lora.weights  # A is still stored, only frozen
    assert fa.activations < lora.activations  # q and v keep no input for A's gradient
    table = main(["--methods", "full,lora,lora_fa"])
    assert "lora_fa r=8 q,v" in table and f"{fa.trainable_params:,}" in table


def test_the_planner_is_within_25_percent_of_a_measured_lora_fa_step() -> None:
    shape = shape_from_model_config("tiny_encoder", ["model.checkpoint=null"])
    model = tiny_encoder_of(shape)
    cfg = {"name": "lora", "rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]}
    apply_adapter(model, {**cfg, "trainable": ["classifier"], "freeze_a": True})
    b, s = 64, 32
    ids, labels = torch.randint(1, shape.vocab_size, (b, s)), torch.randint(0, 2, (b,))
    mask = torch.ones(b, s, dtype=torch.bool)
    measured = measure_step_memory(
        model, lambda m: F.cross_entropy(m(input_ids=ids, attention_mask=mask), labels)
    )
    estimated = estimate(
        shape, Workload(b, s, "fp32"), Method("lora_fa", rank=8, targets=("q_proj", "v_proj"))
    )
    assert estimated.total == pytest.approx(measured.total, rel=0.25)
    assert estimated.static == measured.parameters + measured.gradients + measured.optimizer_state


@pytest.mark.slow
def test_a_run_rebuilt_from_its_checkpoint_has_the_a_it_trained_with(train_cfg) -> None:
    from loralab.train import train

    sizes = ["data.n_train=64", "data.n_val=32", "data.n_test=32"]
    cfg = train_cfg("adapter=lora_fa", "logger=[]", "model.checkpoint=null", *sizes)
    train(cfg)
    out = Path(cfg.paths.output_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_name"] == "lora-fa_r8_a16_qv"
    saved = load_file(out / "adapter.safetensors")
    # the checkpoint keeps only what trains; A comes back from the run's seed
    run = load_run(out / "checkpoints" / "last.ckpt")
    layers = dict(lora_layers(run.model))
    assert layers and summary["trainable_params"] == count_parameters(run.model).trainable
    for name, layer in layers.items():
        assert torch.equal(layer.lora_A.detach(), saved[f"{name}.lora_A"])
        assert torch.equal(layer.lora_B.detach(), saved[f"{name}.lora_B"])

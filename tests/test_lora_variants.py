"""rsLoRA, DoRA, PiSSA and LoRA+: each equals its base at init, merges exactly, and does its math."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tests.adapter_models import (
    VARIANTS,
    adapter_cfg,
    pretend_trained,
    tiny_backbone,
    token_batch,
)
from torch import nn

from loralab.lora import (
    AdapterConfigError,
    DoRALayer,
    LoRALayer,
    apply_adapter,
    build_layer,
    count_parameters,
    load_adapter,
    lora_layers,
    lora_scaling,
    save_adapter,
)
from loralab.measure.merge_diff import max_merge_diff
from loralab.run.resolvers import run_name
from loralab.tasks.optim import scaled_optimizer


def linear(seed: int = 0, in_features: int = 12, out_features: int = 20) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


@torch.no_grad()
def train_a_little(layer: LoRALayer) -> None:
    layer.lora_B.normal_(std=0.1)
    layer.lora_A.add_(0.1 * torch.randn_like(layer.lora_A))
    if isinstance(layer, DoRALayer):
        layer.lora_magnitude.mul_(1.2)


def layer_of(variant: str, base: nn.Linear) -> LoRALayer:
    cfg = VARIANTS[variant]
    layer_class = DoRALayer if cfg.get("name") == "dora" else LoRALayer
    return layer_class(
        base,
        rank=4,
        alpha=8,
        init=cfg.get("init", "kaiming"),
        scaling_rule=cfg.get("scaling", "standard"),
    )


# --- every variant ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [*VARIANTS, "dora+pissa"])
def test_every_variant_equals_its_base_at_init(variant: str) -> None:
    base = tiny_backbone()
    x = token_batch()
    expected = base(x)
    extra = {**VARIANTS["dora"], **VARIANTS["pissa"]} if variant == "dora+pissa" else {}
    model = copy.deepcopy(base)
    apply_adapter(model, adapter_cfg(**VARIANTS.get(variant, extra)))
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
    if variant in ("lora", "rslora", "dora"):
        assert torch.equal(model(x), expected)  # B = 0 (and m = ||W||) make it exact


@pytest.mark.parametrize("variant", VARIANTS)
def test_merge_unmerge_round_trip_within_1e_5(variant: str) -> None:
    layer = layer_of(variant, linear())
    train_a_little(layer)
    x = torch.randn(6, 12)
    before_weight = layer.base.weight.detach().clone()
    before_out = layer(x)

    layer.merge()
    assert (layer.base.weight - before_weight).abs().max() > 1e-3  # the update went in
    assert (layer(x) - before_out).abs().max() < 1e-5
    layer.unmerge()
    assert (layer.base.weight - before_weight).abs().max() < 1e-5
    assert (layer(x) - before_out).abs().max() < 1e-5


@pytest.mark.parametrize("variant", VARIANTS)
def test_whole_model_merge_matches_for_every_variant(variant: str) -> None:
    model = tiny_backbone()
    apply_adapter(model, adapter_cfg(**VARIANTS[variant]))
    pretend_trained(model)
    assert max_merge_diff(model, token_batch()) < 1e-5


# --- rsLoRA ----------------------------------------------------------------------------------


def test_rslora_scales_by_alpha_over_sqrt_rank() -> None:
    assert lora_scaling(16, 4) == 4.0
    assert lora_scaling(16, 4, "rs") == 8.0
    layer = LoRALayer(linear(), rank=16, alpha=8, scaling_rule="rs")
    assert layer.scaling == pytest.approx(8 / math.sqrt(16))
    train_a_little(layer)
    x = torch.randn(5, 12)
    expected = layer.base(x) + 2.0 * x @ (layer.lora_B @ layer.lora_A).T
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=0)


# --- DoRA ------------------------------------------------------------------------------------


def test_dora_magnitude_starts_at_the_row_norms_and_trains() -> None:
    base = linear()
    layer = DoRALayer(base, rank=4, alpha=8)
    torch.testing.assert_close(layer.lora_magnitude, base.weight.norm(dim=1))
    trainable = [n for n, p in layer.named_parameters() if p.requires_grad]
    assert trainable == ["lora_A", "lora_B", "lora_magnitude"]
    assert sum(p.numel() for p in layer.adapter_parameters().values()) == 4 * (12 + 20) + 20
    layer(torch.randn(3, 12)).pow(2).sum().backward()
    assert layer.lora_magnitude.grad.abs().sum() > 0 and base.weight.grad is None


def test_dora_forward_is_magnitude_times_normalised_direction() -> None:
    layer = DoRALayer(linear(), rank=4, alpha=8)
    train_a_little(layer)
    x = torch.randn(7, 12)
    direction = layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A
    weight = layer.lora_magnitude[:, None] * direction / direction.norm(dim=1, keepdim=True)
    torch.testing.assert_close(layer(x), x @ weight.T + layer.base.bias, atol=1e-5, rtol=0)
    # each row of the merged weight has exactly the trained magnitude as its length
    layer.merge()
    torch.testing.assert_close(layer.base.weight.norm(dim=1), layer.lora_magnitude)


def test_adapter_dora_counts_the_magnitudes() -> None:
    model = tiny_backbone()
    report = apply_adapter(model, adapter_cfg(name="dora"))
    assert report.method == "dora" and report.summary().startswith("dora: 6 layers wrapped")
    assert all(isinstance(layer, DoRALayer) for _, layer in lora_layers(model))
    lora = tiny_backbone()
    apply_adapter(lora, adapter_cfg())
    magnitudes = 2 * (32 + 32 + 64)  # q, v, fc1 in 2 layers: one per output row
    assert report.trainable == count_parameters(lora).trainable + magnitudes


# --- PiSSA -----------------------------------------------------------------------------------


def test_pissa_takes_the_top_singular_part_and_leaves_the_residual() -> None:
    base = linear()
    original = base.weight.detach().clone()
    layer = build_layer(base, {"name": "lora", "rank": 4, "alpha": 8, "init": "pissa"})
    u, s, vh = torch.linalg.svd(original)
    top = u[:, :4] @ torch.diag(s[:4]) @ vh[:4]
    torch.testing.assert_close(layer.delta_weight(), top, atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.base.weight, original - top, atol=1e-5, rtol=0)
    # the residual's largest singular value is W's fifth
    residual_s = torch.linalg.svdvals(layer.base.weight)
    assert residual_s[0].item() == pytest.approx(s[4].item(), rel=1e-4)
    # and B @ A is not zero: the gradient reaches A from the first step
    assert layer.lora_B.abs().sum() > 0 and layer.lora_A.abs().sum() > 0


def test_pissa_adapter_file_reloads_onto_a_fresh_base(tmp_path) -> None:
    """The residual is recomputed from the same base, so the file holds A, B and the head only."""
    model = tiny_backbone()
    apply_adapter(model, adapter_cfg(init="pissa"))
    pretend_trained(model)
    size = save_adapter(tmp_path / "adapter.safetensors", model, {"adapter": {"init": "pissa"}})
    fresh = tiny_backbone()
    apply_adapter(fresh, adapter_cfg(init="pissa"))
    load_adapter(tmp_path / "adapter.safetensors", fresh)
    x = token_batch()
    torch.testing.assert_close(fresh(x), model(x), atol=1e-6, rtol=0)
    assert size < 40_000  # no full-size residual in the file


def test_pissa_rank_above_the_weight_size_names_the_key() -> None:
    model = tiny_backbone()
    with pytest.raises(AdapterConfigError, match="adapter.rank=40 exceeds") as info:
        apply_adapter(model, adapter_cfg(init="pissa", rank=40))
    assert "q_proj" in str(info.value)
    assert not any(True for _ in lora_layers(model))


# --- LoRA+ -----------------------------------------------------------------------------------


def test_lora_plus_gives_exactly_the_b_matrices_a_scaled_learning_rate() -> None:
    model = tiny_backbone()
    apply_adapter(model, adapter_cfg(lr_ratio_b=16))
    lr = 2e-3
    optimizer = scaled_optimizer(
        lambda params: torch.optim.AdamW(params, lr=lr),
        [p for p in model.parameters() if p.requires_grad],
    )
    by_lr = {group["lr"]: {id(p) for p in group["params"]} for group in optimizer.param_groups}
    b_ids = {id(layer.lora_B) for _, layer in lora_layers(model)}
    assert set(by_lr) == {lr, 16 * lr}
    assert by_lr[16 * lr] == b_ids
    assert len(by_lr[lr]) == sum(1 for p in model.parameters() if p.requires_grad) - len(b_ids)


def test_without_lora_plus_there_is_one_group() -> None:
    model = tiny_backbone()
    apply_adapter(model, adapter_cfg())
    optimizer = scaled_optimizer(
        lambda params: torch.optim.SGD(params, lr=0.1),
        [p for p in model.parameters() if p.requires_grad],
    )
    assert [group["lr"] for group in optimizer.param_groups] == [0.1]


# --- configs and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("scaling", "sqrt"),
        ("init", "orthogonal"),
        ("quant", "fp8"),
        ("double_quant", "yes"),
        ("lr_ratio_b", 0),
        ("lr_ratio_b", True),
        ("name", "lokr"),
    ],
)
def test_bad_variant_keys_name_the_key_and_leave_the_model_untouched(key: str, value) -> None:
    model = tiny_backbone()
    with pytest.raises(AdapterConfigError, match=f"adapter.{key}") as info:
        apply_adapter(model, adapter_cfg(**{key: value}))
    assert str(info.value).endswith(".")
    assert not any(True for _ in lora_layers(model))
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "lora_r8_a16_qv"),
        ({"scaling": "standard", "init": "kaiming", "quant": None}, "lora_r8_a16_qv"),
        ({"scaling": "rs"}, "rslora_r8_a16_qv"),
        ({"name": "dora"}, "dora_r8_a16_qv"),
        ({"quant": "nf4"}, "qlora-nf4_r8_a16_qv"),
        ({"quant": "int8"}, "qlora-int8_r8_a16_qv"),
        ({"init": "pissa"}, "lora-pissa_r8_a16_qv"),
        ({"name": "dora", "scaling": "rs", "init": "pissa"}, "rsdora-pissa_r8_a16_qv"),
    ],
)
def test_run_names_say_which_variant(extra: dict, expected: str) -> None:
    adapter = {"name": "lora", "rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj"], **extra}
    assert run_name(adapter) == expected

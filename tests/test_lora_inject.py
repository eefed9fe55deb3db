"""apply_adapter, target patterns, merging a whole model, and parameter counts."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf
from tests.adapter_models import ToyTransformer
from torch import nn

from loralab.lora import (
    AdapterConfigError,
    LoRALayer,
    apply_adapter,
    count_parameters,
    find_target_modules,
    format_parameter_table,
    lora_layers,
    match_any,
    merge_lora,
    unmerge_lora,
)
from loralab.measure.merge_diff import max_merge_diff

D, HIDDEN, N_LAYERS, N_CLASSES = 16, 24, 2, 3


def make_model(seed: int = 0) -> ToyTransformer:
    torch.manual_seed(seed)
    return ToyTransformer(D, HIDDEN, N_LAYERS, N_CLASSES)


def lora_cfg(**overrides) -> dict:
    cfg = {"name": "lora", "rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}
    cfg["trainable"] = ["classifier"]
    return {**cfg, **overrides}


def randomize_lora_b(model: nn.Module) -> None:
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.normal_(std=0.1)


def inputs() -> torch.Tensor:
    return torch.randn(2, 5, D, generator=torch.Generator().manual_seed(1))


BLOCK_LINEARS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "ffn.fc1", "ffn.fc2")
ALL_LINEAR = [
    f"layers.{i}.{name}" for i in range(N_LAYERS) for name in BLOCK_LINEARS
]  # model order


# --- target patterns -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "exclude", "expected"),
    [
        (["layers.0.attn.q_proj"], [], ["layers.0.attn.q_proj"]),
        (["q_proj"], [], ["layers.0.attn.q_proj", "layers.1.attn.q_proj"]),
        ("attn.q_proj", [], ["layers.0.attn.q_proj", "layers.1.attn.q_proj"]),
        (["*.q_proj"], [], ["layers.0.attn.q_proj", "layers.1.attn.q_proj"]),
        (["layers.1.ffn.*"], [], ["layers.1.ffn.fc1", "layers.1.ffn.fc2"]),
        (
            ["re:layers\\.0\\.attn\\.[qk]_proj"],
            [],
            ["layers.0.attn.q_proj", "layers.0.attn.k_proj"],
        ),
        (
            ["v_proj", "q_proj"],
            [],
            [f"layers.{i}.attn.{p}" for i in (0, 1) for p in ("q_proj", "v_proj")],
        ),
        (["all-linear"], [], ALL_LINEAR),
        (
            ["all-linear"],
            ["layers.1.*", "fc2"],
            [n for n in ALL_LINEAR if n.startswith("layers.0") and "fc2" not in n],
        ),
        (["q_proj"], ["re:layers\\.0\\..*"], ["layers.1.attn.q_proj"]),
    ],
)
def test_target_forms(patterns, exclude, expected) -> None:
    assert find_target_modules(make_model(), patterns, exclude) == expected


def test_all_linear_leaves_out_output_heads() -> None:
    names = find_target_modules(make_model(), "all-linear")
    assert "classifier" not in names and len(names) == N_LAYERS * 6


def test_glob_can_still_target_the_head() -> None:
    assert find_target_modules(make_model(), ["classif*"]) == ["classifier"]


def test_multihead_attention_out_proj_is_never_a_target() -> None:
    # nn.MultiheadAttention reads out_proj.weight itself, so a LoRA wrapper there would be ignored
    model = nn.ModuleDict({"mha": nn.MultiheadAttention(D, 2), "fc": nn.Linear(D, D)})
    assert find_target_modules(model, "all-linear") == ["fc"]
    with pytest.raises(AdapterConfigError, match="'out_proj' matches no"):
        find_target_modules(model, "out_proj")


def test_suffix_matches_only_on_a_dot_boundary() -> None:
    assert not match_any("layers.0.attn.q_proj", "proj")
    assert match_any("layers.0.attn.q_proj", ["nope", "attn.q_proj"])
    assert not match_any("layers.0.attn.q_proj", "ttn.q_proj")


def test_a_pattern_matching_nothing_names_the_key_and_the_choices() -> None:
    with pytest.raises(AdapterConfigError) as info:
        find_target_modules(make_model(), ["q_proj", "proj"])
    message = str(info.value)
    assert "adapter.targets" in message and "'proj'" in message
    assert "layers.0.attn.q_proj" in message and "all-linear" in message


@pytest.mark.parametrize("targets", [[], None, ""])
def test_empty_targets_are_an_error(targets) -> None:
    with pytest.raises(AdapterConfigError, match="adapter.targets"):
        find_target_modules(make_model(), targets)


def test_invalid_regex_is_a_config_error() -> None:
    with pytest.raises(AdapterConfigError, match="regular expression"):
        find_target_modules(make_model(), ["re:layers.(["])


def test_excluding_everything_is_an_error() -> None:
    with pytest.raises(AdapterConfigError, match="adapter.exclude"):
        find_target_modules(make_model(), ["q_proj"], exclude=["*"])


# --- apply_adapter -------------------------------------------------------------------------


def test_lora_wraps_targets_freezes_the_rest_and_counts() -> None:
    model = make_model()
    report = apply_adapter(model, lora_cfg())
    assert report.method == "lora"
    assert report.replaced == [f"layers.{i}.attn.{p}" for i in (0, 1) for p in ("q_proj", "v_proj")]
    assert report.trainable_modules == ["classifier"]
    assert [name for name, _ in lora_layers(model)] == report.replaced
    assert isinstance(model.layers[0].attn.q_proj, LoRALayer)
    assert isinstance(model.layers[0].attn.k_proj, nn.Linear)

    per_layer = 4 * (D + D)
    head = D * N_CLASSES + N_CLASSES
    assert report.trainable == 4 * per_layer + head
    assert report.total == count_parameters(make_model()).total + 4 * per_layer
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"{name}.lora_{ab}" for name in report.replaced for ab in "AB"}
    assert trainable == expected | {"classifier.weight", "classifier.bias"}
    assert "4 layers wrapped" in report.summary() and f"{report.trainable:,}" in report.summary()


def test_gradients_only_on_adapters_and_trainable_modules() -> None:
    model = make_model()
    apply_adapter(model, lora_cfg(targets="all-linear"))
    randomize_lora_b(model)  # so dL/dA is non-zero too
    model(inputs()).sum().backward()
    for name, param in model.named_parameters():
        if name.endswith(("lora_A", "lora_B")) or name.startswith("classifier."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_per_layer_counts_with_different_in_and_out() -> None:
    model = make_model()
    report = apply_adapter(model, lora_cfg(rank=3, targets=["fc1", "fc2"], trainable=[]))
    assert report.trainable == N_LAYERS * 2 * 3 * (D + HIDDEN)
    assert report.trainable_modules == []


def test_targets_inside_trainable_modules_are_trained_in_full() -> None:
    model = make_model()
    report = apply_adapter(
        model, lora_cfg(targets="all-linear", trainable=["layers.1.*", "classifier"])
    )
    assert report.trainable_modules == ["layers.1.attn", "layers.1.ffn", "classifier"]
    assert report.replaced == [n for n in ALL_LINEAR if n.startswith("layers.0.")]
    assert all(p.requires_grad for p in model.layers[1].parameters())
    assert not any(p.requires_grad for p in model.norm.parameters())


def test_targets_all_inside_trainable_is_an_error() -> None:
    with pytest.raises(AdapterConfigError, match="adapter.trainable"):
        apply_adapter(make_model(), lora_cfg(targets=["classifier"], trainable=["classifier"]))


def test_trainable_pattern_matching_nothing_names_the_key() -> None:
    with pytest.raises(AdapterConfigError, match="adapter.trainable entry 'head'") as info:
        apply_adapter(make_model(), lora_cfg(trainable=["head"]))
    assert "classifier" in str(info.value)


def test_full_leaves_everything_trainable() -> None:
    model = make_model()
    model.norm.requires_grad_(False)
    report = apply_adapter(model, {"name": "full", "lr": 1e-3, "trainable": []})
    assert report.method == "full" and report.replaced == []
    assert all(p.requires_grad for p in model.parameters())
    assert report.trainable == report.total == count_parameters(model).total
    assert not any(True for _ in lora_layers(model))


def test_omegaconf_config_with_extra_keys() -> None:
    cfg = OmegaConf.create(lora_cfg(dropout=0.1, init="gaussian", lr=1e-2))
    report = apply_adapter(make_model(), cfg)
    assert len(report.replaced) == 4


def test_unknown_method_names_the_key() -> None:
    with pytest.raises(AdapterConfigError, match="adapter.name"):
        apply_adapter(make_model(), {"name": "prefix-tuning"})


def test_applying_lora_twice_is_an_error() -> None:
    model = make_model()
    apply_adapter(model, lora_cfg())
    with pytest.raises(AdapterConfigError, match="already has LoRA layers"):
        apply_adapter(model, lora_cfg())


@pytest.mark.parametrize(
    "bad", [{"rank": 0}, {"alpha": -1}, {"targets": ["nope"]}, {"trainable": ["x"]}]
)
def test_a_bad_config_leaves_the_model_untouched(bad: dict) -> None:
    model = make_model()
    with pytest.raises(AdapterConfigError):
        apply_adapter(model, lora_cfg(**bad))
    assert not any(True for _ in lora_layers(model))
    assert all(p.requires_grad for p in model.parameters())


def test_logs_what_it_replaced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="loralab.lora"):
        apply_adapter(make_model(), lora_cfg())
    assert "layers.1.attn.v_proj" in caplog.text


# --- merging a whole model -----------------------------------------------------------------


def test_merge_lora_keeps_outputs_and_unmerge_restores_weights() -> None:
    model = make_model()
    apply_adapter(model, lora_cfg(targets="all-linear"))
    randomize_lora_b(model)
    base_weights = {n: layer.base.weight.detach().clone() for n, layer in lora_layers(model)}
    x = inputs()
    before = model(x)
    merge_lora(model)
    assert all(layer.merged for _, layer in lora_layers(model))
    assert (model(x) - before).abs().max() < 1e-5
    unmerge_lora(model)
    for name, layer in lora_layers(model):
        assert not layer.merged
        assert (layer.base.weight - base_weights[name]).abs().max() < 1e-6


def test_max_merge_diff_is_tiny_and_restores_the_model() -> None:
    model = make_model()
    apply_adapter(model, lora_cfg(dropout=0.2))
    randomize_lora_b(model)
    model.train()
    assert max_merge_diff(model, inputs()) < 1e-5
    assert model.training
    assert not any(layer.merged for _, layer in lora_layers(model))


def test_max_merge_diff_restores_per_module_modes_and_merged_layers() -> None:
    model = make_model()
    apply_adapter(model, lora_cfg())
    randomize_lora_b(model)
    model.train()
    model.norm.eval()  # a submodule kept in eval on purpose stays in eval
    model.layers[0].attn.q_proj.merge()
    assert max_merge_diff(model, inputs()) < 1e-5
    assert model.training and model.layers[1].training and not model.norm.training
    assert [layer.merged for _, layer in lora_layers(model)] == [True, False, False, False]


def test_max_merge_diff_reads_logits_and_kwargs() -> None:
    class DictOutput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = make_model()

        def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": self.backbone(features)}

    model = DictOutput()
    apply_adapter(model, lora_cfg())
    randomize_lora_b(model)
    assert 0 <= max_merge_diff(model, features=inputs()) < 1e-5


# --- parameter counts ----------------------------------------------------------------------


def test_count_parameters_numbers() -> None:
    block_params = 4 * (D * D + D) + (D * HIDDEN + HIDDEN) + (HIDDEN * D + D)
    total = N_LAYERS * block_params + 2 * D + D * N_CLASSES + N_CLASSES
    counts = count_parameters(make_model())
    assert (counts.trainable, counts.total, counts.percent) == (total, total, 100.0)
    model = make_model()
    model.requires_grad_(False)
    assert count_parameters(model).percent == 0.0
    assert count_parameters(nn.Sequential()).percent == 0.0


def test_count_parameters_counts_a_shared_weight_once() -> None:
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, shared)).total == 20


def test_parameter_table_shows_groups_and_totals() -> None:
    model = make_model()
    report = apply_adapter(model, lora_cfg())
    text = format_parameter_table(model)
    assert "lora_A/lora_B in 4 layers" in text and "classifier" in text
    total_line = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("total "))
    counts = count_parameters(model)
    assert f"{report.trainable:,}" in total_line and f"{report.total:,}" in total_line
    assert f"{counts.percent:.2f}%" in total_line


# --- the closed adapter schema and the rank limit ------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"rnak": 4}, r"adapter\.rnak is not an adapter setting .*; did you mean adapter\.rank\?"),
        ({"zzz": 1}, r"adapter\.zzz is not an adapter setting .*; remove it\.$"),
    ],
)
def test_unknown_adapter_keys_are_refused_before_any_change(extra, message):
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for cfg in (lora_cfg(**extra), {"name": "full", **extra}):
        with pytest.raises(AdapterConfigError, match=message):
            apply_adapter(model, cfg)
    assert not any(True for _ in lora_layers(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_every_documented_adapter_key_is_accepted():
    cfg = lora_cfg(
        dropout=0.0,
        scaling="standard",
        init="kaiming",
        exclude=[],
        lr=1e-2,
        lr_ratio_b=16,
        quant=None,
        double_quant=False,
    )
    apply_adapter(make_model(), cfg)
    apply_adapter(make_model(), lora_cfg(quant="int8", double_quant=True))


def test_a_rank_above_min_in_out_names_the_layer_and_the_limit():
    model = make_model()
    apply_adapter(make_model(), lora_cfg(rank=D, targets=["q_proj", "fc1"]))  # rank == limit
    with pytest.raises(
        AdapterConfigError,
        match=(
            rf"adapter\.rank={D + 1} is above min\(out, in\) = {D} of the weight matrix of the "
            rf"targeted Linear layer layers\.0\.attn\.q_proj \(4 of 4 targets are that small\); set adapter\.rank to "
            rf"at most {D}"
        ),
    ):
        apply_adapter(model, lora_cfg(rank=D + 1, targets=["q_proj", "fc1"]))
    assert not any(True for _ in lora_layers(model)) and all(
        p.requires_grad for p in model.parameters()
    )

"""Every layer type works the way Linear does: Linear, GPT-2's Conv1D, Embedding, Conv1d and
Conv2d each equal their base at init, merge and unmerge exactly, round-trip through adapter
files, and convert to and from Hugging Face PEFT on the same tensors (max abs diff <= 1e-5),
for each variant PEFT supports on that type; the other (variant, type) pairs are refused.

`pytest tests/test_layer_types.py -k peft -s` prints the measured PEFT differences.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
from tests.adapter_models import pretend_trained
from torch import nn

from loralab.lora import (
    AdapterConfigError,
    apply_adapter,
    export_peft,
    import_peft,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    unmerge_lora,
)

peft = pytest.importorskip("peft")
Conv1D = pytest.importorskip("transformers.pytorch_utils").Conv1D

TOLERANCE = 1e-5
TYPES = {
    "Linear": "proj",
    "Conv1D": "c1d",
    "Embedding": "emb",
    "Conv1d": "conv1",
    "Conv2d": "conv2",
}
VARIANTS = {"lora": {}, "rslora": {"scaling": "rs"}, "dora": {"name": "dora"}}
PISSA_TYPES = ("Linear", "Conv1D")  # as in PEFT: an SVD of a 2-D weight
PAIRS = [(t, v) for t in TYPES for v in VARIANTS] + [(t, "pissa") for t in PISSA_TYPES]
PEFT_OPTIONS = {"lora": {}, "rslora": {"use_rslora": True}, "dora": {"use_dora": True}}


class AllTypes(nn.Module):
    """One layer of every type in a row: ids -> Embedding -> Conv1D -> Conv1d -> Conv2d -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16, padding_idx=0)
        self.c1d = Conv1D(24, 16)  # nf=24 outputs, nx=16 inputs: W is 16 x 24
        self.conv1 = nn.Conv1d(24, 12, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(12, 8, kernel_size=3, stride=2, padding=1)
        self.proj = nn.Linear(8, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.c1d(self.emb(input_ids))  # (B, T, 24)
        x = self.conv1(x.transpose(1, 2))  # (B, 12, T)
        x = self.conv2(x.view(*x.shape[:2], 4, -1))  # (B, 8, 2, T/8)
        return self.classifier(torch.tanh(self.proj(x.mean(dim=(2, 3)))))


def all_types(seed: int = 0) -> AllTypes:
    torch.manual_seed(seed)
    return AllTypes().eval()


IDS = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))


def adapter(layer_type: str, variant: str) -> dict:
    keys = {"init": "pissa"} if variant == "pissa" else VARIANTS[variant]
    cfg = {"name": "lora", "rank": 2, "alpha": 4, "targets": [TYPES[layer_type]]}
    return {**cfg, "trainable": "auto", **keys}


def adapted(layer_type: str, variant: str) -> tuple[nn.Module, nn.Module]:
    """(the untouched base, a copy with a trained-looking adapter on the layer of that type)."""
    base = all_types()
    model = copy.deepcopy(base)
    report = apply_adapter(model, adapter(layer_type, variant))
    assert [layer.layer_type.name for _, layer in lora_layers(model)] == [layer_type]
    assert report.trainable_modules == ["classifier"]  # auto: the model's head
    pretend_trained(model)
    return base, model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize(("layer_type", "variant"), PAIRS)
def test_each_pair_equals_its_base_at_init_and_merges_and_unmerges_exactly(layer_type, variant):
    base = all_types()
    model = copy.deepcopy(base)
    apply_adapter(model, adapter(layer_type, variant))
    with torch.no_grad():
        assert max_diff(model(IDS), base(IDS)) < 1e-6  # PiSSA: residual + top part = W
        pretend_trained(model)
        model.eval()
        adapted_out = model(IDS)
        assert max_diff(adapted_out, base(IDS)) > 1e-3  # the adapter matters
        (name, layer), *_ = lora_layers(model)
        before = layer.base.weight.clone()
        merge_lora(model)
        assert max_diff(model(IDS), adapted_out) < TOLERANCE
        assert max_diff(layer.base.weight, before) > 1e-4  # the update is in W now
        unmerge_lora(model)
        assert max_diff(layer.base.weight, before) < TOLERANCE
        assert max_diff(model(IDS), adapted_out) < TOLERANCE


@pytest.mark.parametrize(("layer_type", "variant"), PAIRS)
def test_each_pair_round_trips_through_an_adapter_file(layer_type, variant, tmp_path):
    _, model = adapted(layer_type, variant)
    save_adapter(tmp_path / "adapter.safetensors", model)
    fresh = all_types()  # the same base: PiSSA recomputes the same residual from it
    apply_adapter(fresh, adapter(layer_type, variant))
    load_adapter(tmp_path / "adapter.safetensors", fresh)
    with torch.no_grad():
        assert max_diff(fresh.eval()(IDS), model(IDS)) == 0.0


@pytest.mark.parametrize(("layer_type", "variant"), PAIRS)
def test_peft_loads_our_adapter_of_each_pair_with_the_same_outputs(layer_type, variant, tmp_path):
    base, model = adapted(layer_type, variant)
    export_peft(model, tmp_path)
    twin = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    with torch.no_grad():
        diff = max_diff(twin(IDS), model(IDS))
    print(f"PEFT export {layer_type:9} {variant:6}: max abs diff {diff:.2e}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("layer_type", TYPES)
def test_a_peft_adapter_of_each_type_imports_with_the_same_outputs(layer_type, variant, tmp_path):
    config = peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=[TYPES[layer_type]], modules_to_save=["classifier"],
        **PEFT_OPTIONS[variant],
    )  # fmt: skip
    twin = peft.get_peft_model(all_types(), config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking: B != 0, a moved head and magnitude
        for param in (p for p in twin.parameters() if p.requires_grad):
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    twin.eval().save_pretrained(tmp_path)
    model = all_types()
    report = import_peft(tmp_path, model)
    with torch.no_grad():
        diff = max_diff(twin(IDS), model.eval()(IDS))
    print(f"PEFT import {layer_type:9} {variant:6}: max abs diff {diff:.2e}")
    assert diff <= TOLERANCE
    assert report.replaced == [TYPES[layer_type]]


@pytest.mark.parametrize("layer_type", ["Embedding", "Conv1d", "Conv2d"])
def test_pissa_on_a_type_without_a_2d_weight_is_refused_naming_the_pair(layer_type):
    model = all_types()
    with pytest.raises(AdapterConfigError, match=f"pissa variant .* does not support {layer_type}"):
        apply_adapter(model, adapter(layer_type, "pissa"))
    assert not any(True for _ in lora_layers(model))


def test_a_target_of_a_type_lora_cannot_wrap_names_it_and_the_supported_types():
    class WithNorm(AllTypes):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(8)

    with pytest.raises(AdapterConfigError) as error:
        apply_adapter(WithNorm(), {**adapter("Linear", "lora"), "targets": ["norm"]})
    message = str(error.value)
    assert "norm, a LayerNorm" in message
    assert "Linear, Conv1D, Embedding, Conv1d, Conv2d" in message


@pytest.mark.parametrize(
    ("layer", "option"),
    [
        (nn.Conv2d(4, 4, 3, groups=2), "groups=2"),
        (nn.Conv2d(4, 4, 3, dilation=2), "dilation=(2, 2)"),
        (nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
        (nn.Embedding(10, 4, max_norm=1.0), "max_norm=1.0"),
    ],
)
def test_a_layer_whose_update_would_not_fold_in_exactly_is_refused_by_name(layer, option):
    model = nn.Sequential()
    model.add_module("target", layer)
    with pytest.raises(AdapterConfigError, match=f"selects target, .*{re.escape(option)}.*exclude"):
        apply_adapter(model, {"name": "lora", "rank": 2, "alpha": 4, "targets": ["target"]})
    assert model.target is layer


def test_a_tied_embedding_is_refused_since_merging_would_change_the_head_too(tmp_path):
    from tests.hf_models import gpt2_folder
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(gpt2_folder(tmp_path / "gpt2"))
    assert model.lm_head.weight is model.transformer.wte.weight
    with pytest.raises(
        AdapterConfigError, match="transformer.wte, whose weight is tied to lm_head"
    ):
        apply_adapter(model, {"name": "lora", "rank": 2, "alpha": 4, "targets": ["wte"]})


@pytest.mark.parametrize("layer_type", TYPES)
def test_qlora_adapts_each_type_over_a_base_whose_linear_layers_are_quantized(layer_type, tmp_path):
    from loralab.lora import QuantizedLinear

    model = all_types()
    report = apply_adapter(model, {**adapter(layer_type, "lora"), "quant": "nf4"})
    quantized = {
        n: m.layer_type for n, m in model.named_modules() if isinstance(m, QuantizedLinear)
    }
    # the frozen Linear and Conv1D layers (the trained classifier stays float), wrapped or not
    assert set(quantized.values()) == {"Linear", "Conv1D"} and len(report.quantized) == 2
    pretend_trained(model)
    with torch.no_grad():
        expected = model.eval()(IDS)
        merge_lora(model)
        assert max_diff(model(IDS), expected) < TOLERANCE
        unmerge_lora(model)
        assert max_diff(model(IDS), expected) < TOLERANCE
    save_adapter(tmp_path / "adapter.safetensors", model)
    fresh = all_types()
    apply_adapter(fresh, {**adapter(layer_type, "lora"), "quant": "nf4"})
    load_adapter(tmp_path / "adapter.safetensors", fresh)
    with torch.no_grad():
        assert max_diff(fresh.eval()(IDS), expected) == 0.0

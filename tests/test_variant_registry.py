"""A variant registered from outside the library works everywhere the built-in ones do.

The toy variant here, gated LoRA (h = W x + g * scaling * B A x with a trainable scalar gate
g, 1 at init), is declared in this file only: no library file names it. Injection, merge,
adapter files, the PEFT export, run names, the rank analysis and the memory planner must all
handle it by asking the registry and the layer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch
from tests.adapter_models import adapter_cfg, pretend_trained, tiny_backbone, token_batch
from torch import Tensor, nn

from loralab.analysis import linear_weights, lora_updates
from loralab.lora import (
    AdapterConfigError,
    LoRALayer,
    Variant,
    apply_adapter,
    export_peft,
    load_adapter,
    lora_layers,
    merge_and_unwrap,
    merge_lora,
    register_variant,
    save_adapter,
)
from loralab.lora.variants import MemoryTerms, method_names, unregister_variant
from loralab.measure.merge_diff import max_merge_diff
from loralab.measure.planner import Method, Workload, estimate
from loralab.memory import PRESETS, llama_shape
from loralab.models import save_backbone
from loralab.run.resolvers import run_name


class GatedLoRALayer(LoRALayer):
    """LoRA whose update is multiplied by one trainable number, the gate."""

    def __init__(self, base: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(base, *args, **kwargs)
        self.lora_gate = nn.Parameter(self.lora_B.new_ones(()))

    def adapter_parameters(self) -> dict[str, nn.Parameter]:
        return {**super().adapter_parameters(), "lora_gate": self.lora_gate}

    def forward(self, x: Tensor) -> Tensor:
        result = self.base(x)
        if self.merged:
            return result
        update = self.low_rank(self.dropout(x))
        return result + self.scaling * self.lora_gate * update

    def delta_weight(self) -> Tensor:
        return super().delta_weight() * self.lora_gate

    def peft_state(self) -> dict[str, Tensor]:
        # PEFT has no gate: the exported B carries it, so plain LoRA computes the same
        names = self.layer_type.peft_names
        return {
            names["lora_A"]: self.lora_A.detach(),
            names["lora_B"]: (self.lora_B * self.lora_gate).detach(),
        }


class GatedLoRA(Variant):
    name = "gated"
    key, values = "name", ("gated",)
    layer = GatedLoRALayer
    memory = MemoryTerms(extra_params_per_layer=1)  # the planner: plain LoRA plus one gate


@pytest.fixture
def gated() -> Iterator[Variant]:
    variant = register_variant(GatedLoRA())
    try:
        yield variant
    finally:
        unregister_variant(variant.name)


def gated_cfg(**overrides: Any) -> Mapping[str, Any]:
    return adapter_cfg(name="gated", **overrides)


@torch.no_grad()
def trained_gated_model() -> tuple[nn.Module, nn.Module]:
    base = tiny_backbone()
    model = copy.deepcopy(base)
    apply_adapter(model, gated_cfg())
    pretend_trained(model)
    for _, layer in lora_layers(model):
        layer.lora_gate.fill_(0.7)
    return base, model.eval()


def test_injection_builds_the_registered_layer_and_equals_the_base_at_init(gated) -> None:
    base = tiny_backbone().eval()
    model = copy.deepcopy(base)
    report = apply_adapter(model, gated_cfg())
    layers = dict(lora_layers(model))
    assert report.method == "gated" and set(layers) == set(report.replaced)
    assert all(isinstance(layer, GatedLoRALayer) for layer in layers.values())
    # the gate trains with A and B, and counts as a trainable parameter
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "layers.0.attn.q_proj.lora_gate" in names
    x = token_batch()
    with torch.no_grad():
        assert torch.equal(model.eval()(x), base(x))


def test_merge_and_unwrap_fold_the_gated_update_exactly(gated) -> None:
    _, model = trained_gated_model()
    x = token_batch()
    assert max_merge_diff(model, x) < 1e-5
    with torch.no_grad():
        before = model(x)
        plain = merge_and_unwrap(copy.deepcopy(model))
        assert not any(True for _ in lora_layers(plain))
        assert (plain(x) - before).abs().max() < 1e-5


def test_adapter_file_round_trip_onto_a_fresh_base(gated, tmp_path) -> None:
    _, model = trained_gated_model()
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, {"adapter": dict(gated_cfg())})
    fresh = tiny_backbone()
    apply_adapter(fresh, gated_cfg())
    load_adapter(path, fresh)
    x = token_batch()
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model(x))
        assert float(fresh.layers[0].attn.q_proj.lora_gate) == pytest.approx(0.7)


def test_peft_loads_the_export_as_plain_lora_with_the_same_outputs(gated, tmp_path) -> None:
    peft = pytest.importorskip("peft")
    base, model = trained_gated_model()
    export_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and not config.get("use_dora")
    peft_model = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    x = token_batch()
    with torch.no_grad():
        assert (peft_model(x) - model(x)).abs().max() < 1e-5


def test_the_rank_analysis_reads_the_gated_change_from_the_files(gated, tmp_path) -> None:
    base, model = trained_gated_model()
    base_path = tmp_path / "base.safetensors"
    save_backbone(base, base_path)
    adapter_path = tmp_path / "adapter.safetensors"
    save_adapter(adapter_path, model, {"adapter": dict(gated_cfg())})
    updates = lora_updates(adapter_path, base_path)
    pretrained = linear_weights(base.state_dict())
    merge_lora(model)
    for name, layer in lora_layers(model):
        expected = layer.base.weight.double() - pretrained[name].double()
        torch.testing.assert_close(updates[name], expected, atol=1e-6, rtol=0)
        # the gate is in the change: 0.7 x scaling x B @ A, not scaling x B @ A
        assert updates[name].abs().max() > 0


def test_run_names_and_choices_know_the_registered_variant(gated) -> None:
    assert run_name(gated_cfg()) == "gated_r4_a8_qv-fc1"
    assert run_name(gated_cfg(scaling="rs")) == "rsgated_r4_a8_qv-fc1"
    assert "gated" in method_names()
    with pytest.raises(AdapterConfigError, match="gated"):
        apply_adapter(tiny_backbone(), adapter_cfg(name="nope"))


def test_the_memory_planner_plans_it_from_its_declared_terms(gated) -> None:
    shape = llama_shape("Llama-2-7b", **PRESETS["7b"])
    workload = Workload(1, 512, "bf16")
    lora = estimate(shape, workload, Method("lora", rank=8, train_head=False))
    gated_estimate = estimate(shape, workload, Method("gated", rank=8, train_head=False))
    gates = 32 * 2  # one per adapted layer: q and v in 32 blocks
    assert gated_estimate.trainable_params == lora.trainable_params + gates
    # 16 bytes per trained number in bf16: weight, gradient, Adam's two moments, fp32 master
    assert gated_estimate.static == lora.static + 16 * gates


def test_unregistering_takes_the_variant_away(gated) -> None:
    unregister_variant("gated")
    with pytest.raises(AdapterConfigError, match="adapter.name must be one of"):
        apply_adapter(tiny_backbone(), gated_cfg())
    with pytest.raises(ValueError, match="--methods: unknown method 'gated'"):
        estimate(llama_shape("7b", **PRESETS["7b"]), Workload(), Method("gated"))

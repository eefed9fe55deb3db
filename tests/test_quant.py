"""QLoRA's quantized base: error bounds, stored bytes, the frozen layer, merging, the summary."""

from __future__ import annotations

import copy
import json
import logging
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from tests.adapter_models import adapter_cfg, pretend_trained, tiny_backbone, token_batch
from torch import nn

from loralab.lora import (
    QuantizedLinear,
    apply_adapter,
    base_weight_bytes,
    count_parameters,
    lora_layers,
    quantize_frozen_linears,
)
from loralab.lora.quant import (
    NF4_BLOCK_SIZE,
    NF4_LEVELS,
    NF4_MAX_HALF_GAP,
    dequantize,
    dequantize_scales,
    quantize,
)
from loralab.measure.merge_diff import max_merge_diff


def pretrained_like_weight(out_features: int = 96, in_features: int = 100) -> torch.Tensor:
    """Roughly normal with a few outliers, like real weights; 9600 values is not a block multiple."""
    torch.manual_seed(0)
    weight = 0.02 * torch.randn(out_features, in_features)
    weight[3, 7], weight[50, 1] = 0.5, -0.3
    return weight


def per_block(values: torch.Tensor, block: int = NF4_BLOCK_SIZE) -> torch.Tensor:
    """A per-block quantity spread back to one value per weight (padding cut off)."""
    return values.repeat_interleave(block)


# --- the formats -----------------------------------------------------------------------------


def test_nf4_levels_are_the_published_normal_float_values() -> None:
    assert NF4_LEVELS.shape == (16,)
    assert torch.all(NF4_LEVELS[1:] > NF4_LEVELS[:-1])
    assert (NF4_LEVELS[0].item(), NF4_LEVELS[7].item(), NF4_LEVELS[15].item()) == (-1.0, 0.0, 1.0)
    # a few entries of the QLoRA paper's table (Dettmers et al., 2023, appendix E)
    published = {1: -0.6961928009986877, 8: 0.07958029955625534, 14: 0.7229568362236023}
    for index, value in published.items():
        assert NF4_LEVELS[index].item() == pytest.approx(value, abs=1e-6)
    # the widest gap is the outermost on the negative side (7 negative levels, 8 positive)
    assert NF4_MAX_HALF_GAP == pytest.approx((1.0 - 0.6961928009986877) / 2, abs=1e-6)


def test_nf4_weights_on_the_levels_come_back_exactly_in_their_places() -> None:
    # every level at every position of a byte (high and low nibble), in blocks of absmax 2
    codes = torch.randint(0, 16, (6, 64), generator=torch.Generator().manual_seed(0))
    codes[:, 0] = 15  # each block holds the largest level, so its absmax is exactly 2
    weight = 2 * NF4_LEVELS[codes]
    q = quantize(weight, "nf4")
    assert q.codes.numel() == weight.numel() // 2
    assert torch.equal(dequantize(q), weight)


def test_nf4_error_is_within_half_the_widest_level_gap_times_the_block_absmax() -> None:
    weight = pretrained_like_weight()
    q = quantize(weight, "nf4")
    error = (dequantize(q) - weight).abs().flatten()
    bound = NF4_MAX_HALF_GAP * per_block(q.scales)[: weight.numel()]
    assert torch.all(error <= bound + 1e-7)
    # and the bound is not vacuous: some weights come close to it
    assert (error / bound).max() > 0.5


def test_nf4_with_double_quant_adds_only_the_scale_error() -> None:
    weight = pretrained_like_weight()
    plain = quantize(weight, "nf4")
    q = quantize(weight, "nf4", double_quant=True)
    assert q.scales.dtype == torch.int8 and torch.equal(q.codes, plain.codes)
    scales = dequantize_scales(q.scales, q.scale_absmax, q.scale_mean)
    scale_error = (scales - plain.scales).abs()
    assert scale_error.max() <= q.scale_absmax.max() / 254 + 1e-9
    error = (dequantize(q) - weight).abs().flatten()
    bound = per_block(NF4_MAX_HALF_GAP * plain.scales + scale_error)[: weight.numel()]
    assert torch.all(error <= bound + 1e-7)


def test_int8_error_is_within_half_a_step_of_the_row_absmax() -> None:
    """Bound used: |w - w_hat| <= absmax_row / 254 (half of one step absmax_row / 127)."""
    weight = pretrained_like_weight()
    q = quantize(weight, "int8")
    assert q.codes.dtype == torch.int8 and q.scales.shape == (weight.shape[0],)
    error = (dequantize(q) - weight).abs()
    absmax_row = weight.abs().amax(dim=1, keepdim=True)
    assert torch.all(error <= absmax_row / 254 + 1e-8)
    assert torch.all(error <= absmax_row / 127)  # the looser bound the issue states


def test_int8_with_double_quant_adds_only_the_scale_error() -> None:
    weight = pretrained_like_weight()
    q = quantize(weight, "int8", double_quant=True)
    scales = dequantize_scales(q.scales, q.scale_absmax, q.scale_mean)
    absmax_row = weight.abs().amax(dim=1)
    bound = absmax_row / 254 + (scales - absmax_row).abs()
    assert torch.all((dequantize(q) - weight).abs() <= bound[:, None] + 1e-8)


def test_zero_weights_stay_zero_and_shapes_dtypes_come_back() -> None:
    weight = torch.zeros(4, 10, dtype=torch.float64)
    for fmt in ("int8", "nf4"):
        restored = dequantize(quantize(weight, fmt), torch.float64)
        assert restored.shape == (4, 10) and restored.dtype == torch.float64
        assert torch.equal(restored, weight)


@pytest.mark.parametrize(
    ("fmt", "double_quant", "limit"),
    [("nf4", False, 0.16), ("nf4", True, 0.16), ("int8", False, 0.27), ("int8", True, 0.27)],
)
@pytest.mark.parametrize("shape", [(128, 128), (512, 128), (96, 100)])
def test_stored_bytes_are_a_fraction_of_float32(fmt, double_quant, limit, shape) -> None:
    layer = QuantizedLinear(nn.Linear(shape[1], shape[0]), fmt, double_quant)
    fp32 = 4 * shape[0] * shape[1]
    # counted honestly: every code, scale and padding byte the layer keeps
    assert layer.stored_bytes() == sum(b.numel() * b.element_size() for b in layer.buffers())
    assert layer.stored_bytes() <= limit * fp32
    if fmt == "nf4":
        blocks = math.ceil(shape[0] * shape[1] / NF4_BLOCK_SIZE)
        # float32 absmax per block, or int8 codes + a float32 absmax per 256 of them + a mean
        scales = blocks + 4 * math.ceil(blocks / 256) + 4 if double_quant else 4 * blocks
        assert layer.stored_bytes() == blocks * NF4_BLOCK_SIZE // 2 + scales


# --- the frozen layer ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["int8", "nf4"])
def test_quantized_linear_dequantizes_on_the_fly_and_stores_no_float_weight(fmt: str) -> None:
    linear = nn.Linear(100, 96)
    with torch.no_grad():
        linear.weight.copy_(pretrained_like_weight())
    layer = QuantizedLinear(linear, fmt)
    x = torch.randn(5, 100)
    expected = x @ dequantize(quantize(linear.weight, fmt)).T + linear.bias
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=0)
    assert [name for name, _ in layer.named_parameters()] == ["bias"]
    assert not any(b.is_floating_point() and b.numel() >= 96 * 100 for b in layer.buffers())
    assert not layer.bias.requires_grad
    # its state dict rebuilds the same layer
    copy_ = QuantizedLinear(nn.Linear(100, 96), fmt)
    copy_.load_state_dict(layer.state_dict())
    assert torch.equal(copy_(x), layer(x))


def test_quantize_frozen_linears_skips_what_trains() -> None:
    model = nn.Sequential(
        OrderedDict(fc=nn.Linear(8, 8), head=nn.Linear(8, 2), attn=nn.MultiheadAttention(8, 2))
    )
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    assert quantize_frozen_linears(model, "nf4") == ["fc"]
    assert isinstance(model.fc, QuantizedLinear) and type(model.head) is nn.Linear
    assert type(model.attn.out_proj) is not QuantizedLinear


# --- QLoRA as an adapter ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lora", "dora"])
@pytest.mark.parametrize("fmt", ["int8", "nf4"])
def test_qlora_equals_its_quantized_base_at_init(name: str, fmt: str) -> None:
    model = tiny_backbone()
    reference = copy.deepcopy(model).requires_grad_(False)
    reference.classifier.requires_grad_(True)
    quantize_frozen_linears(reference, fmt, double_quant=True)
    report = apply_adapter(model, adapter_cfg(name=name, quant=fmt, double_quant=True))
    x = token_batch()
    torch.testing.assert_close(model(x), reference(x), atol=1e-6, rtol=0)
    # every frozen linear is quantized: 6 per block (q, k, v, o, fc1, fc2), 2 blocks
    assert len(report.quantized) == 12
    assert "12 frozen linear layers quantized" in report.summary()
    for _, layer in lora_layers(model):
        assert isinstance(layer.base, QuantizedLinear)
        assert layer.lora_A.dtype == torch.float32 and layer.lora_B.requires_grad
    assert type(model.classifier) is nn.Linear and model.classifier.weight.requires_grad


def test_quantization_keeps_the_parameter_count_and_shrinks_the_bytes() -> None:
    counts, sizes = {}, {}
    for quant in (None, "int8", "nf4"):
        model = tiny_backbone()
        apply_adapter(model, adapter_cfg(quant=quant))
        counts[quant], sizes[quant] = count_parameters(model), base_weight_bytes(model)
    assert counts["nf4"] == counts["int8"] == counts[None]
    fp32 = sizes[None]["base_weight_bytes"]
    assert sizes[None]["base_weight_bytes_fp32"] == fp32
    assert sizes["nf4"]["base_weight_bytes_fp32"] == sizes["int8"]["base_weight_bytes_fp32"] == fp32
    assert sizes["nf4"]["base_weight_bytes"] < sizes["int8"]["base_weight_bytes"] < fp32


def test_base_weight_bytes_counts_codes_scales_and_full_precision_tensors_exactly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(fc=nn.Linear(128, 64), classifier=nn.Linear(64, 2)))
    apply_adapter(model, {"name": "lora", "rank": 2, "alpha": 4, "targets": ["fc"],
                          "trainable": ["classifier"], "quant": "nf4"})  # fmt: skip
    codes, scales = 64 * 128 // 2, 4 * (64 * 128 // 64)
    bias, head = 4 * 64, 4 * (64 * 2 + 2)
    assert base_weight_bytes(model) == {
        "base_weight_bytes": codes + scales + bias + head,
        "base_weight_bytes_fp32": 4 * 64 * 128 + bias + head,
        # the frozen linear weights alone: fc's codes and scales (the trained head is not frozen)
        "frozen_linear_bytes": codes + scales,
        "frozen_linear_bytes_fp32": 4 * 64 * 128,
    }


def test_merging_into_a_quantized_base_warns_keeps_float_and_unmerges_exactly(caplog) -> None:
    model = tiny_backbone()
    apply_adapter(model, adapter_cfg(quant="nf4"))
    pretend_trained(model)
    layer = next(layer for _, layer in lora_layers(model))
    codes = layer.base.codes.clone()
    with caplog.at_level(logging.WARNING, logger="loralab.lora"):
        assert max_merge_diff(model, token_batch()) < 1e-5
        assert max_merge_diff(model, token_batch()) < 1e-5  # told once, not per merge
    # one sentence for every layer of the merge, not one per layer
    told = [r.getMessage() for r in caplog.records if "stored as nf4" in r.getMessage()]
    n = sum(isinstance(layer.base, QuantizedLinear) for _, layer in lora_layers(model))
    assert n > 1 and len(told) == 1 and told[0].startswith(f"merging into {n} layers")
    assert "requantizing them to nf4 would change them by up to" in told[0]
    layer.merge()
    assert layer.base.dense_weight is not None and layer.base.dense_weight.dtype == torch.float32
    layer.unmerge()
    assert layer.base.dense_weight is None and torch.equal(layer.base.codes, codes)


def test_a_qlora_run_reports_its_base_weight_bytes(train_cfg) -> None:
    from loralab.train import train

    cfg = train_cfg("adapter=qlora", "debug=fdr", "logger=[]", "model.checkpoint=null")
    train(cfg)
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert summary["run_name"] == "qlora-nf4_r8_a16_qv"
    # 4-bit codes + scales: about 1/7 of float32 for the layers QLoRA quantizes; the embeddings
    # stay in float32 (as in QLoRA), so the whole base shrinks less
    assert summary["frozen_linear_bytes"] < 0.16 * summary["frozen_linear_bytes_fp32"]
    assert summary["base_weight_bytes"] < summary["base_weight_bytes_fp32"]
    assert summary["total_params"] > summary["trainable_params"] > 0


def test_generation_dequantizes_each_layer_once_per_call_with_the_same_answers(
    tmp_path, monkeypatch
) -> None:
    from tests.tiny_llm import write_tiny_llama

    from loralab.lora.quantized_linear import QuantizedLinear
    from loralab.models.generation import generate_many
    from loralab.models.hf import build_hf_model

    model = build_hf_model(str(write_tiny_llama(tmp_path / "llama")), task="causal_lm")
    apply_adapter(model, {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear",
                          "quant": "nf4", "trainable": []})  # fmt: skip
    pretend_trained(model)
    layers = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    prompts, new_tokens = [[5, 9, 13], [7, 8]], 6
    calls = {"n": 0}
    real = QuantizedLinear.dequantize

    def counted(self):
        calls["n"] += 1
        return real(self)

    monkeypatch.setattr(QuantizedLinear, "dequantize", counted)
    held = generate_many(model, prompts, new_tokens, stop_ids={0}, pad_id=0, batch_size=1)
    assert calls["n"] == len(layers) > 0  # once per layer for all batches, not once per token
    assert all(layer.held_weight is None for layer in layers)  # dropped afterwards
    with torch.no_grad():  # token by token, each forward dequantizing afresh
        ids = torch.tensor([prompts[0]])
        for _ in range(new_tokens):
            ids = torch.cat([ids, model(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert calls["n"] > 2 * len(layers)
    expected = ids[0, len(prompts[0]) :].tolist()
    assert held[0] and held[0] == expected[: len(held[0])]

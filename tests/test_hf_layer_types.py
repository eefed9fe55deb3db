"""The new layer types on real (tiny, random, save_pretrained) Hugging Face models: GPT-2's
Conv1D and embeddings, BERT, SqueezeBERT's Conv1d and ResNet's Conv2d, each against PEFT on
the same tensors; `all-linear` as PEFT means it; QLoRA and DoRA on GPT-2's transposed weights."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from tests.adapter_models import pretend_trained
from tests.hf_models import bert_folder, gpt2_folder, resnet_folder, squeezebert_folder

from loralab.lora import (
    QuantizedLinear,
    apply_adapter,
    export_peft,
    lora_layers,
    merge_and_unwrap,
)
from loralab.models.hf import build_hf_model

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

IDS = {"input_ids": torch.randint(1000, 2000, (2, 12), generator=torch.Generator().manual_seed(0))}
PIXELS = {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {
        "gpt2": gpt2_folder(root / "gpt2", pad_token_id=0),
        "bert": bert_folder(root / "bert"),
        "squeezebert": squeezebert_folder(root / "squeezebert"),
        "resnet": resnet_folder(root / "resnet"),
    }


def classifier(folders: dict[str, Path], name: str) -> torch.nn.Module:
    if name == "resnet":
        model = transformers.AutoModelForImageClassification.from_pretrained(folders[name])
        return model.eval()
    return build_hf_model(folders[name], num_labels=3).eval()


# model -> (targets, the layer types they select, the inputs)
CASES = {
    "gpt2": (["c_attn", "wte"], {"Conv1D", "Embedding"}, IDS),
    "bert": (["query", "word_embeddings"], {"Linear", "Embedding"}, IDS),
    "squeezebert": (["query", "value"], {"Conv1d"}, IDS),
    "resnet": (["convolution"], {"Conv2d"}, PIXELS),
}


@pytest.mark.parametrize("variant", [{}, {"name": "dora", "scaling": "rs"}], ids=["lora", "rsdora"])
@pytest.mark.parametrize("name", CASES)
def test_peft_loads_our_adapter_on_real_models_of_every_layer_type(
    folders, name, variant, tmp_path
):
    targets, kinds, inputs = CASES[name]
    base = classifier(folders, name)
    model = copy.deepcopy(base)
    cfg = {"name": "lora", "rank": 2, "alpha": 4, "targets": targets, "trainable": "auto"}
    report = apply_adapter(model, {**cfg, **variant})
    assert {layer.layer_type.name for _, layer in lora_layers(model)} == kinds
    assert report.trainable_modules == ["score" if name == "gpt2" else "classifier"]
    pretend_trained(model)
    export_peft(model.eval(), tmp_path)
    twin = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    with torch.no_grad():
        diff = float((twin(**inputs).logits - model(**inputs).logits).abs().max())
    print(f"PEFT export {name:11} {'+'.join(sorted(kinds)):18} {report.method}: {diff:.2e}")
    assert diff <= 1e-5


def test_all_linear_on_gpt2_is_linear_and_conv1d_and_never_the_head(folders):
    lm = transformers.AutoModelForCausalLM.from_pretrained(folders["gpt2"])
    report = apply_adapter(
        lm, {"name": "lora", "rank": 2, "alpha": 4, "targets": "all-linear", "trainable": "auto"}
    )
    suffixes = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert report.replaced == [f"transformer.h.{i}.{s}" for i in range(2) for s in suffixes]
    assert report.trainable_modules == []  # a language model's lm_head is pretrained
    classify = classifier(folders, "gpt2")
    report = apply_adapter(
        classify, {"name": "lora", "rank": 2, "alpha": 4, "targets": "all-linear", "trainable": []}
    )
    assert "score" not in report.replaced and len(report.replaced) == 8


def test_dora_on_conv1d_rescales_output_channels_which_are_columns_of_w(folders):
    model = classifier(folders, "gpt2")
    weight = model.transformer.h[0].attn.c_attn.weight.detach().clone()  # in x out = 32 x 96
    apply_adapter(model, {"name": "dora", "rank": 2, "alpha": 4, "targets": ["c_attn"]})
    layer = model.transformer.h[0].attn.c_attn
    assert layer.lora_magnitude.shape == (96,)
    torch.testing.assert_close(layer.lora_magnitude, weight.norm(dim=0))


def test_qlora_quantizes_gpt2s_conv1d_bases_and_merges_back_into_conv1d(folders):
    from transformers.pytorch_utils import Conv1D

    base = classifier(folders, "gpt2")
    keys = {k: v.shape for k, v in base.state_dict().items()}
    model = copy.deepcopy(base)
    cfg = {"name": "lora", "rank": 2, "alpha": 4, "targets": ["c_attn"], "quant": "nf4"}
    report = apply_adapter(model, {**cfg, "trainable": "auto"})
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    assert len(report.quantized) == len(quantized) == 8  # c_attn, c_proj, c_fc, c_proj x 2
    assert {q.layer_type for q in quantized} == {"Conv1D"}
    c_attn = model.transformer.h[0].attn.c_attn
    assert c_attn.base.weight.shape == (32, 96)  # dequantized in Conv1D's own layout
    error = (c_attn.base.weight - base.transformer.h[0].attn.c_attn.weight).abs().max()
    assert 0 < error < 0.02  # NF4 rounding of N(0, 0.02) weights
    pretend_trained(model)
    with torch.no_grad():
        expected = model.eval()(**IDS).logits
        merge_and_unwrap(model)
        assert (model(**IDS).logits - expected).abs().max() < 1e-5
    assert type(model.transformer.h[0].attn.c_attn) is Conv1D
    assert {k: v.shape for k, v in model.state_dict().items()} == keys  # from_pretrained-ready


@pytest.mark.slow
def test_the_peft_benchmark_runs_on_gpt2s_layout():
    import argparse
    import importlib.util

    from loralab.run.resolvers import project_root

    spec = importlib.util.spec_from_file_location(
        "bench_peft", f"{project_root()}/scripts/bench_peft.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # GPT-2's layout (Conv1D c_attn, a score head) at a size that runs in a second
    bench.GPT2_SHAPE = {"vocab_size": 2000, "n_embd": 32, "n_layer": 2, "n_head": 2}
    args = argparse.Namespace(
        model="gpt2", rounds=1, steps=1, batch_size=2, seq_len=8, device="cpu", random_init=False
    )
    ratios = bench.run(args)
    assert set(ratios) == {
        "lora_step / peft_step",
        "floor_step / peft_step",  # the frozen base alone: what no LoRA can beat
        "lora_step / floor_step",
        "merged_inference / base",
        "unmerged_inference / base",
        "peft_unmerged_inference / base",
    }
    assert all(0 < value < float("inf") for value in ratios.values())

"""loralab's LoRA and Hugging Face PEFT's compute the same function on the real MiniLM."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("peft")
pytest.importorskip("transformers")

from loralab.lora import apply_adapter, lora_layers, merge_lora  # noqa: E402
from loralab.models.hf import build_hf_model, minilm_path  # noqa: E402

SENTENCES = ["The soup was far from dreadful.", "I loathed the hotel room.", "Superb!"]


@pytest.fixture(scope="module")
def minilm_and_batch():
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = build_hf_model(minilm_path(), num_labels=3).eval()
    batch = AutoTokenizer.from_pretrained(minilm_path())(
        SENTENCES, padding=True, return_tensors="pt"
    )
    return model, dict(batch)


def test_same_a_and_b_give_peft_logits_unmerged_and_merged(minilm_and_batch):
    from peft import LoraConfig, get_peft_model

    base, batch = minilm_and_batch
    ours = copy.deepcopy(base)
    adapter = {
        "name": "lora",
        "rank": 8,
        "alpha": 16,
        "targets": ["query", "value"],
        "trainable": ["classifier"],
    }
    report = apply_adapter(ours, adapter)
    peft_config = LoraConfig(
        r=8, lora_alpha=16, target_modules=["query", "value"], modules_to_save=["classifier"]
    )
    twin = get_peft_model(copy.deepcopy(base), peft_config).eval()

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, layer in lora_layers(ours):  # a trained-looking adapter: B is not zero
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=generator) * 0.1)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)
            peft_layer = twin.base_model.model.get_submodule(name)
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
    assert len(report.replaced) == 12  # 6 layers x (query, value)
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, twin)]
    assert trainable[0] == trainable[1]  # the same trainable set: adapters + classifier

    with torch.no_grad():
        expected = twin(**batch).logits
        torch.testing.assert_close(ours(**batch).logits, expected, atol=1e-5, rtol=0)
        assert (expected - base(**batch).logits).abs().max() > 1e-2  # the adapter matters
        merge_lora(ours)
        torch.testing.assert_close(ours(**batch).logits, expected, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_the_peft_benchmark_runs_and_reports_every_ratio():
    import argparse
    import importlib.util

    from loralab.run.resolvers import project_root

    path = f"{project_root()}/scripts/bench_peft.py"
    spec = importlib.util.spec_from_file_location("bench_peft", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # MiniLM's layout (query/value/classifier names), at a size that runs in a second
    bench.MINILM_SHAPE = {
        "vocab_size": 2000,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    args = argparse.Namespace(
        rounds=1, steps=1, batch_size=2, seq_len=8, device="cpu", random_init=True,
        compile=True, compile_backend="aot_eager",  # the compiled rows, traced cheaply
    )  # fmt: skip
    ratios = bench.run(args)
    assert set(bench.TARGETS_BY_RATIO) <= set(ratios)
    assert all(0 < value < float("inf") for value in ratios.values())
    assert 0 < ratios["lora_memory / full_memory"] < 1  # LoRA keeps far fewer grads and moments


@pytest.mark.slow
def test_the_benchmarks_floor_is_the_lora_step_without_the_adapter():
    """The floor (bench_peft.frozen_base_floor) trains the same head on the same loss as a
    LoRA model whose B is 0, and backpropagates to the adapted modules' outputs, with no
    adapter tensor at all."""
    import importlib.util

    from transformers import BertConfig, BertForSequenceClassification

    from loralab.run.resolvers import project_root

    spec = importlib.util.spec_from_file_location(
        "bench_peft", f"{project_root()}/scripts/bench_peft.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    shape = {"vocab_size": 200, "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 2, "intermediate_size": 64}  # fmt: skip
    base = BertForSequenceClassification(BertConfig(**shape, num_labels=2)).eval()
    ours = copy.deepcopy(base)
    apply_adapter(ours, {"name": "lora", "rank": 4, "alpha": 8, "targets": ["query", "value"],
                         "trainable": ["classifier"]})  # fmt: skip
    floor = bench.frozen_base_floor(base, ["query", "value"], "classifier")
    ids = torch.randint(0, 200, (3, 7))
    seen = []
    floor.bert.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda module, args, out: seen.append(out.requires_grad)
    )
    for model in (ours, floor):
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids).logits, torch.tensor([0, 1, 1])
        )
        loss.backward()
    assert seen == [True]  # the first adapted layer's output asks for its gradient
    trained = [name for name, p in floor.named_parameters() if p.requires_grad]
    assert trained == ["classifier.weight", "classifier.bias"]
    for name in trained:  # B = 0: the same loss, so the same head gradient
        torch.testing.assert_close(
            floor.get_parameter(name).grad, ours.get_parameter(name).grad, rtol=1e-5, atol=1e-7
        )

"""Memory savers on Llama layers: gradient checkpointing under LoRA gives the same gradients,
and QLoRA (NF4, int8) stores the frozen q_proj ... down_proj quantized and still trains."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")

from tests.tiny_llm import write_tiny_llama  # noqa: E402

from loralab.errors import ConfigError  # noqa: E402
from loralab.lora import apply_adapter, lora_layers  # noqa: E402
from loralab.lora.quantized_linear import QuantizedLinear  # noqa: E402
from loralab.models.hf import build_hf_model, enable_gradient_checkpointing  # noqa: E402

LORA = {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear", "trainable": []}
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("llama"), num_hidden_layers=3)


def batch(vocab: int = 300) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 12:] = 0  # a padded row
    return {"input_ids": ids, "attention_mask": mask}


def loss_of(model, inputs) -> torch.Tensor:
    logits = model(**inputs).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), inputs["input_ids"][:, 1:].flatten())


def adapter_grads(model) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss_of(model, batch()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def with_lora(model):
    with torch.no_grad():  # B != 0, so every adapter has a gradient to pass on
        apply_adapter(model, LORA)
        for _, layer in lora_layers(model):
            layer.lora_B.normal_(0, 0.02)
    return model


def test_gradient_checkpointing_gives_lora_the_same_gradients(llama_dir):
    torch.manual_seed(0)
    plain = with_lora(build_hf_model(llama_dir, task="causal_lm"))
    checkpointed = copy.deepcopy(plain)
    enable_gradient_checkpointing(checkpointed)
    assert checkpointed.model.layers[0].gradient_checkpointing
    expected, got = adapter_grads(plain), adapter_grads(checkpointed)
    assert set(got) == set(expected) and len(got) == 2 * 3 * len(PROJECTIONS)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)
    assert all(g.abs().sum() > 0 for g in got.values())


def test_the_config_key_turns_it_on_and_checkpointing_really_recomputes(llama_dir):
    model = with_lora(build_hf_model(llama_dir, task="causal_lm", gradient_checkpointing=True))
    calls = []
    block = model.model.layers[0].self_attn.q_proj
    block.register_forward_hook(lambda *args: calls.append(1))
    adapter_grads(model)
    assert len(calls) == 2  # forward, then again inside backward
    model.eval()  # no checkpointing when not training
    calls.clear()
    with torch.no_grad():
        model(**batch())
    assert len(calls) == 1


def test_a_model_without_checkpointing_support_is_refused_by_key():
    with pytest.raises(ConfigError, match="model.gradient_checkpointing=false"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_qlora_stores_every_llama_projection_quantized_and_trains(llama_dir, quant):
    base = build_hf_model(llama_dir, task="causal_lm")
    model = copy.deepcopy(base)
    report = apply_adapter(model, {**LORA, "quant": quant, "double_quant": quant == "nf4"})
    assert sum(name.endswith(PROJECTIONS) for name in report.replaced) == 3 * len(PROJECTIONS)
    for _, layer in lora_layers(model):
        assert isinstance(layer.base, QuantizedLinear) and layer.base.fmt == quant
    inputs = batch()
    with torch.no_grad():
        reference, quantized = base(**inputs).logits, model(**inputs).logits
    # B = 0: the model is its base up to the rounding of the stored weights (int8 rounds finer)
    error = float((quantized - reference).norm() / reference.norm())
    assert error < (0.2 if quant == "nf4" else 0.02), error
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = loss_of(model, inputs)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_qlora_with_gradient_checkpointing_matches_qlora_without(llama_dir):
    torch.manual_seed(0)
    model = build_hf_model(llama_dir, task="causal_lm")
    with torch.no_grad():
        apply_adapter(model, {**LORA, "quant": "nf4"})
        for _, layer in lora_layers(model):
            layer.lora_B.normal_(0, 0.02)
    checkpointed = copy.deepcopy(model)
    enable_gradient_checkpointing(checkpointed)
    expected, got = adapter_grads(model), adapter_grads(checkpointed)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7)


def test_checkpointing_is_non_reentrant_and_the_frozen_embedding_output_requires_grad(llama_dir):
    """What keeps the adapters in the graph: the embedding is frozen under LoRA, yet its output
    requires grad, and torch's non-reentrant checkpoint follows the graph through each block."""
    model = with_lora(build_hf_model(llama_dir, task="causal_lm", gradient_checkpointing=True))
    assert not model.get_input_embeddings().weight.requires_grad
    outputs = []
    model.get_input_embeddings().register_forward_hook(lambda m, i, out: outputs.append(out))
    model(**batch())
    assert outputs[0].requires_grad
    checkpoint = model.model.layers[0]._gradient_checkpointing_func
    assert checkpoint.keywords["use_reentrant"] is False

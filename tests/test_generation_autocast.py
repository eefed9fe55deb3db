"""Generation under bf16 autocast holds the frozen weights cast once: the same answers as
casting (and dequantizing) them again at every call, and every weight given back as it was."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from loralab.lora import apply_adapter
from loralab.models import generation
from loralab.models.generation import generate_many, held_in_autocast_dtype

pytest.importorskip("transformers")

ADAPTERS = {
    "lora": {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear"},
    "qlora": {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear", "quant": "nf4"},
    "dora": {"name": "dora", "rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
}
PROMPTS = [[5, 9, 13, 2], [7, 3], [11, 4, 6], [8, 8, 1, 12, 30]]


def tiny_tied_llama(adapter: dict) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    apply_adapter(model, {**adapter, "trainable": []})
    with torch.no_grad():  # a trained-looking adapter: B != 0
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return model.eval()


def answers(model: nn.Module) -> list[list[int]]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return generate_many(model, PROMPTS, 8, stop_ids={1}, pad_id=0, batch_size=2)


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_held_casts_give_the_answers_of_casting_at_every_call(adapter, monkeypatch):
    model = tiny_tied_llama(ADAPTERS[adapter])
    before = {name: (p, p.dtype) for name, p in model.named_parameters()}
    held = answers(model)
    after = dict(model.named_parameters())
    assert all(after[n] is p and p.dtype == dtype for n, (p, dtype) in before.items())

    for name in ("held_dequantized", "held_in_autocast_dtype"):  # nothing held at all
        monkeypatch.setattr(generation, name, lambda _model: contextlib.nullcontext())
    assert held == answers(model)
    assert any(len(a) > 1 for a in held)  # real answers, not all cut at once


def test_inside_autocast_frozen_linears_are_held_in_bf16_and_embeddings_are_not():
    model = tiny_tied_llama(ADAPTERS["lora"])
    head, embedding = model.lm_head, model.model.embed_tokens
    assert head.weight is embedding.weight  # tied
    lora_a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    with held_in_autocast_dtype(model):  # no autocast: nothing changes
        assert head.weight.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16), held_in_autocast_dtype(model):
        assert head.weight.dtype == torch.bfloat16
        assert embedding.weight.dtype == torch.float32
        q = model.model.layers[0].self_attn.q_proj
        assert q.base.weight.dtype == torch.bfloat16
        assert lora_a.dtype == torch.float32  # trainable tensors: autocast caches their casts
    assert head.weight is embedding.weight and head.weight.dtype == torch.float32


def test_a_base_whose_weight_dora_reads_is_left_as_it_is():
    model = tiny_tied_llama(ADAPTERS["dora"])
    attention = model.model.layers[0].self_attn
    with torch.autocast("cpu", dtype=torch.bfloat16), held_in_autocast_dtype(model):
        assert attention.q_proj.base.weight.dtype == torch.float32  # DoRA's row norms read it
        assert attention.k_proj.weight.dtype == torch.bfloat16  # not adapted: held


def test_fsdp_sharded_weights_are_left_to_fsdp():
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from loralab.models.generation import is_sharded

    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4)).requires_grad_(False)
        fully_shard(model)
        assert all(map(is_sharded, model.parameters()))
        with torch.autocast("cpu", dtype=torch.bfloat16), held_in_autocast_dtype(model):
            assert all(p.dtype == torch.float32 and is_sharded(p) for p in model.parameters())
    finally:
        dist.destroy_process_group()

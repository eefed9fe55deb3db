"""Generation under bf16 autocast holds the frozen weights cast once: the same answers as
casting (and dequantizing) them again at every call, and every weight given back as it was."""

from __future__ import annotations

import contextlib

import pytest
import torch
from tests.tiny_llm import tiny_tied_llama
from torch import nn

from loralab.models import generation
from loralab.models.generation import generate_many
from loralab.models.held_casts import held_casts

pytest.importorskip("transformers")

ADAPTERS = {
    "lora": {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear"},
    "qlora": {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear", "quant": "nf4"},
    "dora": {"name": "dora", "rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
}
PROMPTS = [[5, 9, 13, 2], [7, 3], [11, 4, 6], [8, 8, 1, 12, 30]]


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

    # nothing held at all
    monkeypatch.setattr(generation, "held_casts", lambda _model: contextlib.nullcontext())
    assert held == answers(model)
    assert any(len(a) > 1 for a in held)  # real answers, not all cut at once


def test_inside_autocast_frozen_linears_are_held_in_bf16_and_embeddings_are_not():
    model = tiny_tied_llama(ADAPTERS["lora"])
    head, embedding = model.lm_head, model.model.embed_tokens
    assert head.weight is embedding.weight  # tied
    lora_a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    with held_casts(model):  # no autocast: nothing changes
        assert head.weight.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16), held_casts(model):
        assert head.weight.dtype == torch.bfloat16
        assert embedding.weight.dtype == torch.float32
        q = model.model.layers[0].self_attn.q_proj
        assert q.base.weight.dtype == torch.bfloat16
        assert lora_a.dtype == torch.float32  # trainable tensors: autocast caches their casts
    assert head.weight is embedding.weight and head.weight.dtype == torch.float32


def test_a_base_whose_weight_dora_reads_is_left_as_it_is():
    model = tiny_tied_llama(ADAPTERS["dora"])
    attention = model.model.layers[0].self_attn
    with torch.autocast("cpu", dtype=torch.bfloat16), held_casts(model):
        assert attention.q_proj.base.weight.dtype == torch.float32  # DoRA's row norms read it
        assert attention.k_proj.weight.dtype == torch.bfloat16  # not adapted: held


def test_fsdp_sharded_weights_are_left_to_fsdp():
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from loralab.models.held_casts import is_sharded

    dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    try:
        model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4)).requires_grad_(False)
        fully_shard(model)
        assert all(map(is_sharded, model.parameters()))
        with torch.autocast("cpu", dtype=torch.bfloat16), held_casts(model):
            assert all(p.dtype == torch.float32 and is_sharded(p) for p in model.parameters())
    finally:
        dist.destroy_process_group()

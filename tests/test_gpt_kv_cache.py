"""TinyGPT's key/value cache: generation reads each token once, and every logit, greedy answer
and sample is the one the whole window gives, before and after the window starts to slide."""

from __future__ import annotations

import pytest
import torch

from loralab.lora import apply_adapter
from loralab.models import TinyGPT, sampling
from loralab.models import generation as generation_module
from loralab.models.blocks import KVCache
from loralab.models.generation import generate_batch
from loralab.models.sampling import sample_ids

VOCAB, MAX_LEN = 30, 16


def adapted_gpt() -> TinyGPT:
    """A tiny TinyGPT with LoRA on every linear layer, moved off its init (B != 0)."""
    torch.manual_seed(0)
    model = TinyGPT(VOCAB, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=MAX_LEN)
    apply_adapter(model, {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear"})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.2)
    return model.eval()


def ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_cached_logits_are_the_whole_sequences_logits_one_chunk_at_a_time():
    model, sequence = adapted_gpt(), ids(12)
    whole = model(sequence)
    cache = KVCache()
    chunks = [sequence[:, :5], sequence[:, 5:6], sequence[:, 6:9], sequence[:, 9:]]
    got = torch.cat([model(chunk, cache=cache) for chunk in chunks], dim=1)
    assert cache.length == 12
    torch.testing.assert_close(got, whole, rtol=0, atol=1e-5)


def test_a_cache_refuses_padding_and_positions_past_max_len():
    model = adapted_gpt()
    cache = KVCache()
    with pytest.raises(ValueError, match="causal attention without padding"):
        model(ids(4), attention_mask=torch.ones(1, 4), cache=cache)
    cache = KVCache()
    model(ids(10), cache=cache)
    with pytest.raises(Exception, match="longer than model.max_len=16"):
        model(ids(7), cache=cache)


def positions_read(model: TinyGPT, fn) -> tuple[object, int]:
    """What fn returns, and how many token positions went through the model's embedding."""
    seen = []
    handle = model.tok_emb.register_forward_hook(lambda m, args, out: seen.append(out.shape[1]))
    try:
        return fn(), sum(seen)
    finally:
        handle.remove()


@pytest.mark.parametrize("prompt_len", [3, 12], ids=["within", "sliding"])
def test_greedy_answers_equal_the_uncached_ones_and_read_each_token_once(prompt_len, monkeypatch):
    model, prompt = adapted_gpt(), ids(prompt_len, seed=3)[0].tolist()
    new = 9  # a 12-token prompt runs past the 15-token window after 3 new tokens
    cached, read = positions_read(
        model, lambda: generate_batch(model, [prompt], new, stop_ids=set(), pad_id=0)
    )
    monkeypatch.setattr(generation_module, "kv_cache_for", lambda _model: None)
    uncached, read_whole = positions_read(
        model, lambda: generate_batch(model, [prompt], new, stop_ids=set(), pad_id=0)
    )
    assert cached == uncached and len(cached[0]) == new
    window = MAX_LEN - 1
    lengths = [min(prompt_len + i, window) for i in range(new)]  # every step reads its window
    assert read_whole == sum(lengths)
    # with the cache: the prompt once, then one token a step until the window slides
    within = [L for L in range(prompt_len, prompt_len + new) if L <= window]
    expected = prompt_len + (len(within) - 1) + (new - len(within)) * window
    assert read == expected < read_whole


def test_samples_are_the_uncached_samples(monkeypatch):
    model, prompt = adapted_gpt(), ids(4, seed=5)[0]
    cached = sample_ids(model, prompt, 20, temperature=1.0, top_k=10, seed=7)
    monkeypatch.setattr(sampling, "kv_cache_for", lambda _model: None)
    assert torch.equal(cached, sample_ids(model, prompt, 20, temperature=1.0, top_k=10, seed=7))

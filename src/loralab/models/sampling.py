"""Autoregressive sampling from any `model(input_ids) -> logits [B, T, V]`, reproducibly.

Shared by `python -m loralab.generate` and the TensorBoard text-sample callback. Random
draws come from an explicit `torch.Generator` on the CPU, so the same seed gives the same
text whatever else the process does with the global RNG, and on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from loralab.models.blocks import KVCache
from loralab.models.outputs import logits_of


def pick_next(
    logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> Tensor:
    """One next-token id per row of `logits` [B, V]: greedy at temperature 0, else sampled
    from softmax(logits / temperature) restricted to the top_k most likely tokens."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1).cpu()  # the generator lives on the CPU
    return torch.multinomial(probs, 1, generator=generator).to(logits.device)


def max_positions(model: nn.Module) -> int | None:
    """The longest input a model takes: TinyGPT's `max_len`, a Hugging Face config's
    `n_positions` (GPT-2) or `max_position_embeddings`; None if it declares none."""
    config = getattr(model, "config", None)
    for found in (
        getattr(model, "max_len", None),
        getattr(config, "n_positions", None),
        getattr(config, "max_position_embeddings", None),
    ):
        if isinstance(found, int) and found > 0:
            return found
    return None


def kv_cache_for(model: nn.Module) -> KVCache | None:
    """An empty key/value cache for a model that takes one (TinyGPT), else None."""
    return KVCache() if getattr(model, "takes_kv_cache", False) else None


def next_token_logits(
    model: nn.Module, ids: Tensor, context: int | None, cache: KVCache | None
) -> Tensor:
    """The logits [B, V] of the token after `ids` [B, L], reading at most the last `context`.

    With a cache, only the ids it does not hold yet run through the model. Once `ids` is
    longer than the context, the window slides and every position moves, so from then on the
    window runs whole, as it does without a cache: the same logits either way.
    """
    if cache is not None and (context is None or ids.shape[1] <= context):
        return logits_of(model(ids[:, cache.length :], cache=cache))[:, -1, :]
    window = ids[:, -context:] if context else ids
    return logits_of(model(window))[:, -1, :]


@torch.no_grad()
def sample_ids(
    model: nn.Module,
    prompt_ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = 0,
) -> Tensor:
    """Continue a 1-D prompt by `max_new_tokens` ids; returns only the new ids.

    The context is cropped to `max_positions - 1` tokens, so a sample never runs past the
    positions the model has (GPT-2's `n_positions`); the last position is the one training
    taught least (no later token ever attends to it), and an adapted model whose position
    embeddings stayed frozen predicts visibly worse there. The model runs in eval mode and is
    left in the mode it was in.
    """
    if prompt_ids.ndim != 1 or len(prompt_ids) == 0:
        raise ValueError("the prompt must be at least one token; pass a non-empty prompt")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    max_len = max_positions(model)
    context = max(1, max_len - 1) if max_len else None
    device = next(model.parameters()).device
    ids = prompt_ids.to(device)[None]
    cache = kv_cache_for(model)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = next_token_logits(model, ids, context, cache)
            ids = torch.cat([ids, pick_next(logits, temperature, top_k, generator)], dim=1)
    finally:
        model.train(was_training)
    return ids[0, len(prompt_ids) :].cpu()

"""Generate continuations of tokenised prompts until a stop token: many at once, or sampled.

Evaluation by generation (exact match) needs the answers of hundreds of prompts, greedily,
with a fixed `max_new_tokens`, each cut at the first stop token (EOS or a chat template's
end-of-turn). A Hugging Face model does this with its own `generate` (key/value cache,
left-padded batches, the positions its architecture expects); any other
`model(input_ids) -> logits` runs the plain loop of `loralab.models.sampling`, one prompt at
a time, with TinyGPT's key/value cache (others run their whole window at every token).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import Tensor, nn

from loralab.models.held_casts import held_casts
from loralab.models.sampling import kv_cache_for, next_token_logits, pick_next


def is_hf_generator(model: nn.Module) -> bool:
    """A Hugging Face model that can `generate` (it has a generation config)."""
    return callable(getattr(model, "generate", None)) and hasattr(model, "generation_config")


def cut_at_stop(ids: Sequence[int], stop_ids: Collection[int]) -> list[int]:
    """The ids before the first stop id (the stop id itself is not part of the answer)."""
    out = []
    for token in ids:
        if token in stop_ids:
            break
        out.append(int(token))
    return out


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Prompts padded on the left, so that every row's next token comes at the same index."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
    return ids, mask


@torch.no_grad()
def generate_batch(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Collection[int],
    pad_id: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = 0,
) -> list[list[int]]:
    """The new ids of each prompt, up to its first stop id; greedy at temperature 0.

    The model runs in eval mode and is left in the mode it was in; sampling draws from a
    generator seeded with `seed` (the global RNG is restored afterwards).
    """
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token; pass non-empty prompts")
    was_training = model.training
    model.eval()
    try:
        # a quantized base is dequantized once for all the tokens, not once per token, and
        # under autocast the frozen weights are cast once
        with torch.no_grad(), held_casts(model):
            if is_hf_generator(model):
                new = _hf_generate(
                    model, prompts, max_new_tokens, stop_ids, pad_id, temperature, top_k, seed
                )
            else:
                new = [
                    _loop(model, p, max_new_tokens, stop_ids, temperature, top_k, seed)
                    for p in prompts
                ]
    finally:
        model.train(was_training)
    return [cut_at_stop(ids, stop_ids) for ids in new]


def _hf_generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Collection[int],
    pad_id: int,
    temperature: float,
    top_k: int | None,
    seed: int | None,
) -> list[list[int]]:
    from transformers import GenerationConfig

    sample = temperature > 0
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_k=top_k if sample else None,
        top_p=None,
        eos_token_id=sorted(stop_ids),
        pad_token_id=pad_id,
        use_cache=True,  # training runs switch the cache off in the model config
    )
    device = next(model.parameters()).device
    ids, mask = left_padded(prompts, pad_id)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
        )
    return out[:, ids.shape[1] :].tolist()


def _loop(
    model: nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    stop_ids: Collection[int],
    temperature: float,
    top_k: int | None,
    seed: int | None,
) -> list[int]:
    """One prompt, one token at a time, stopping early at a stop id."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    max_len = getattr(model, "max_len", None)
    context = max(1, max_len - 1) if max_len else None  # as loralab.models.sampling does
    device = next(model.parameters()).device
    ids = torch.as_tensor(list(prompt), dtype=torch.long, device=device)[None]
    cache = kv_cache_for(model)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = next_token_logits(model, ids, context, cache)
        token = pick_next(logits, temperature, top_k, generator)
        new.append(int(token))
        if new[-1] in stop_ids:
            break
        ids = torch.cat([ids, token], dim=1)
    return new


def generate_many(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Collection[int],
    pad_id: int,
    batch_size: int = 16,
) -> list[list[int]]:
    """Greedy answers of many prompts, in their order, batched by length to pad little."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[list[int]] = [[] for _ in prompts]
    # once for all the batches, not once per batch (without gradients: trained weights too)
    with torch.no_grad(), held_casts(model):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [prompts[i] for i in rows]
            new = generate_batch(model, batch, max_new_tokens, stop_ids, pad_id)
            for i, ids in zip(rows, new, strict=True):
                answers[i] = ids
    return answers

"""Exact match under several processes (DDP, FSDP): each rank answers every world_size-th
prompt, the answers are gathered, and the score is computed once over the whole set.

A split of prompts by stride covers every example exactly once (a DistributedSampler would pad
the last batch with repeats), and every rank ends with the same answers in the set's order, so
every rank logs the same score. Sharded (FSDP2) weights are gathered whole on every rank for
the generation, so that ranks answering different prompts need no collective per step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch.distributed as dist
from torch import nn

from loralab.models.generation import generate_many
from loralab.tasks.exact_match import GenerationScore, score_answers, score_generation


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def every_nth(examples: Any, start: int, step: int) -> Any:
    """The examples start, start + step, ... of a `GenerationSet`."""
    groups = examples.groups
    return dataclasses.replace(
        examples,
        prompts=examples.prompts[start::step],
        prompt_ids=examples.prompt_ids[start::step],
        answers=examples.answers[start::step],
        groups=groups[start::step] if groups is not None else None,
    )


@contextmanager
def whole_weights(model: nn.Module) -> Iterator[None]:
    """FSDP2 units of `model` hold their full weights on every rank inside the block (and are
    not resharded after each forward); a model without such units is left as it is."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in units:  # fully_shard's defaults: the root unit keeps its weights after forward
            unit.set_reshard_after_forward(unit is not model, recurse=False)
            unit.reshard()


def score_across_ranks(
    model: nn.Module, examples: Any, max_new_tokens: int, batch_size: int
) -> GenerationScore:
    """`score_generation` over the whole set, its generation split across the ranks."""
    rank, size = world()
    if size == 1:
        return score_generation(model, examples, max_new_tokens, batch_size)
    mine = every_nth(examples, rank, size)
    with whole_weights(model):
        ids = generate_many(
            model, mine.prompt_ids, max_new_tokens, mine.stop_ids, mine.pad_id, batch_size
        )
    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, ids)
    generated: list[Any] = [None] * len(examples)
    for r, part in enumerate(parts):
        generated[r::size] = part
    return score_answers(examples, generated)


def token_share(count: int, device: Any = None) -> float:
    """world size x this rank's share of the step's predicted tokens (1.0 in one process).

    DDP and FSDP average the ranks' gradients; a rank's loss times this factor makes that
    average the gradient of the mean over every token of the global batch, as one process
    with the whole batch computes it, however the tokens fall across the ranks.
    """
    import torch

    _, size = world()
    if size == 1:
        return 1.0
    total = torch.tensor([float(count)], device=device)
    dist.all_reduce(total)
    return size * count / max(float(total.item()), 1.0)

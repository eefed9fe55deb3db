"""Weights held in bf16 under autocast: a step computes autocast's loss and gradients bit for
bit, the casts are reused until a weight changes in place, trainable weights are held only
without gradients, and every weight is given back as it was."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from tests.tiny_llm import tiny_tied_llama

from loralab.models.held_casts import held_casts, held_copies
from loralab.tasks.base import AdapterBlindTask

pytest.importorskip("transformers")

LORA = {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear"}
DORA = {"name": "dora", "rank": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}
IDS = torch.tensor([[5, 9, 13, 2, 7, 3], [11, 4, 6, 8, 8, 1]])


def bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def step(model, hold: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One training forward and backward under bf16 autocast: the loss and the gradients."""
    model.train()
    model.zero_grad(set_to_none=True)
    with bf16():
        if hold:
            with held_casts(model):
                logits = model(input_ids=IDS).logits
        else:
            logits = model(input_ids=IDS).logits
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), IDS[:, 1:].flatten())
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("adapter", [LORA, DORA, None], ids=["lora", "dora", "full"])
def test_a_held_step_gives_autocasts_loss_and_gradients_bit_for_bit(adapter):
    model = tiny_tied_llama(adapter)
    before = {name: (p, p.dtype) for name, p in model.named_parameters()}
    expected_loss, expected_grads = step(model, hold=False)
    for _ in range(2):  # the second step reuses the first one's casts
        loss, grads = step(model, hold=True)
        assert torch.equal(loss, expected_loss)
        assert len(grads) == len(expected_grads) > 0
        assert all(torch.equal(a, b) for a, b in zip(grads, expected_grads, strict=True))
    after = dict(model.named_parameters())
    assert all(after[n] is p and p.dtype == dtype for n, (p, dtype) in before.items())
    held = len(held_copies(model))
    # LoRA: every frozen linear (7 per layer) and the tied head; full: nothing at a step
    assert (
        held
        == {"lora": 2 * 7 + 1, "dora": 2 * 5 + 1, "full": 0}[
            "full" if adapter is None else adapter["name"]
        ]
    )


def test_a_frozen_cast_is_reused_until_the_weight_changes_in_place():
    model = tiny_tied_llama(LORA)
    layer = model.model.layers[0].self_attn.q_proj
    with bf16(), held_casts(model):
        first = layer.base.weight
    with bf16(), held_casts(model):
        assert layer.base.weight is first  # the same copy, not cast again
    layer.merge()  # W += s B A, in place
    merged = layer.base.weight
    with bf16(), held_casts(model):
        held = layer.base.weight
    assert held is not first and not torch.equal(held, first)
    assert torch.equal(held, merged.to(torch.bfloat16))


def test_trainable_weights_are_held_without_gradients_and_dropped_at_the_next_step():
    model = tiny_tied_llama(None)  # full fine-tuning: every weight trains
    down = model.model.layers[1].mlp.down_proj
    with torch.no_grad(), bf16(), held_casts(model):
        assert down.weight.dtype == torch.bfloat16 and not down.weight.requires_grad
        first = down.weight
    assert down.weight.dtype == torch.float32 and down.weight.requires_grad
    assert len(held_copies(model)) == 2 * 7 + 1
    with torch.no_grad():
        down.weight.mul_(2.0)  # as an optimizer step changes it: in place
        with bf16(), held_casts(model):
            held = down.weight
    assert held is not first and torch.equal(held, down.weight.to(torch.bfloat16))
    with bf16(), held_casts(model):  # a step: autocast casts what trains
        assert down.weight.dtype == torch.float32
    assert held_copies(model) == {}


def test_a_block_within_a_block_and_an_error_inside_leave_the_weights_as_they_were():
    model = tiny_tied_llama(LORA)
    head = model.lm_head
    with bf16(), held_casts(model):
        outer = head.weight
        with held_casts(model):
            assert head.weight is outer
        assert head.weight is outer  # the inner block gave back nothing of the outer's
    assert head.weight is model.model.embed_tokens.weight  # tied again
    with pytest.raises(RuntimeError, match="inside"):
        with bf16(), held_casts(model):
            raise RuntimeError("inside")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with held_casts(model):  # no autocast: nothing is held
        assert head.weight.dtype == torch.float32


def test_a_deep_copy_starts_with_no_casts_of_its_own():
    model = tiny_tied_llama(LORA)
    with bf16(), held_casts(model):
        pass
    twin = copy.deepcopy(model)
    assert held_copies(model) and held_copies(twin) == {}


def test_the_task_forward_holds_the_frozen_weights_under_autocast_only():
    model = tiny_tied_llama(LORA)
    task = AdapterBlindTask(model, optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    batch = {"input_ids": IDS, "labels": IDS}
    task(batch)
    assert held_copies(model) == {}
    with bf16():
        logits = task(batch)
    assert logits.dtype == torch.bfloat16 and len(held_copies(model)) == 2 * 7 + 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_quantized_base_is_dequantized_once_for_evaluation_and_not_for_a_step(precision):
    model = tiny_tied_llama({**LORA, "quant": "nf4"})
    layer = model.model.layers[0].mlp.up_proj.base
    autocast = bf16() if precision == "bf16" else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        expected = model(input_ids=IDS).logits  # dequantized at every call
        with held_casts(model):
            first = layer.held_weight
            assert first.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
            got = model(input_ids=IDS).logits
        with held_casts(model):  # the next evaluation batch: the same float weight
            assert layer.held_weight is first
    assert torch.equal(got, expected) and layer.held_weight is None
    with autocast, held_casts(model):  # a step: QLoRA keeps its small training memory
        assert layer.held_weight is None
    assert all(id(m) not in held_copies(model) for m in model.modules())


def test_casts_made_in_inference_mode_serve_the_next_training_step():
    model = tiny_tied_llama(LORA)  # Lightning validates under torch.inference_mode
    with torch.inference_mode(), bf16(), held_casts(model):
        model(input_ids=IDS)
    assert not any(held.copy.is_inference() for held in held_copies(model).values())
    loss, grads = step(model, hold=True)  # reads those casts, and autograd saves them
    assert torch.isfinite(loss) and all(g is not None for g in grads)

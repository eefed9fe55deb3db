"""The train state the resource monitor reports: weights + gradients + optimizer state, exact."""

from __future__ import annotations

import torch
from tests.adapter_models import adapter_cfg, tiny_backbone, token_batch
from torch import nn

from loralab.lora import apply_adapter
from loralab.measure.step import train_state_bytes


def one_adamw_step(model: nn.Module, loss_of) -> torch.optim.Optimizer:  # noqa: ANN001
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    loss_of(model).backward()
    optimizer.step()
    return optimizer


def test_train_state_counts_weights_buffers_grads_and_adam_state_exactly():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    optimizer = one_adamw_step(model, lambda m: m(torch.randn(5, 4)).sum())
    weights = 4 * (4 * 3 + 3) + 4 * (3 + 3 + 3 + 3) + 8 + 4 * (3 * 2 + 2)  # + BN's int64 count
    trained = [3, 3, 3 * 2, 2]  # BN weight, bias; second linear
    grads = 4 * sum(trained)
    adam = 2 * 4 * sum(trained) + 4 * len(trained)  # two moments + a float32 step per tensor
    assert train_state_bytes(model, [optimizer]) == weights + grads + adam
    assert train_state_bytes(model, []) == weights + grads


def test_lora_keeps_about_a_quarter_of_full_fine_tunings_train_state():
    """Full: weights + grads + two Adam moments, 4x the weights. LoRA: ~ the weights alone."""

    def loss(model: nn.Module) -> torch.Tensor:
        return model(input_ids=token_batch()).sum()

    full = tiny_backbone()
    full_state = train_state_bytes(full, [one_adamw_step(full, loss)])
    lora = tiny_backbone()
    apply_adapter(lora, adapter_cfg())
    lora_state = train_state_bytes(lora, [one_adamw_step(lora, loss)])
    weights = sum(p.numel() * 4 for p in tiny_backbone().parameters())
    assert full_state >= 4 * weights
    assert weights < lora_state < 0.35 * full_state

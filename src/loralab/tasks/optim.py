"""Optimiser, schedule and checkpoint contents shared by every task module."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from loralab import compat


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an adapter (or full fine-tuning) left trainable."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "the model has no trainable parameters; check adapter.targets and adapter.trainable."
        )
    return params


def scaled_optimizer(
    optimizer_factory: Callable[..., torch.optim.Optimizer], params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """One parameter group per learning-rate scale, with lr = scale x the configured lr.

    An adapter may tag tensors with an `lr_scale` attribute (LoRA+ gives its B matrices a
    larger one); this stays generic: it reads the tag, never asks which adapter set it.
    """
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for param in params:
        groups.setdefault(float(getattr(param, "lr_scale", 1.0)), []).append(param)
    if list(groups) == [1.0]:
        optimizer = optimizer_factory(params)
    else:
        optimizer = optimizer_factory([{"params": ps, "lr_scale": s} for s, ps in groups.items()])
        for group in optimizer.param_groups:
            group["lr"] *= group["lr_scale"]  # the factory filled in the configured lr
    # fused AdamW (the configs' default) under bf16-mixed: Lightning may clip its gradients
    compat.unscale_before_the_step(optimizer)
    return optimizer


def build_optimizer(
    module: L.LightningModule,
    optimizer_factory: Callable[..., torch.optim.Optimizer],
    warmup_ratio: float,
    cosine: bool,
) -> Any:
    """AdamW (or whatever the config names) over the trainable parameters, with warmup + cosine."""
    optimizer = scaled_optimizer(optimizer_factory, trainable_parameters(module))
    if warmup_ratio <= 0 and not cosine:
        return optimizer
    total = max(1, int(module.trainer.estimated_stepping_batches))
    warmup = int(warmup_ratio * total)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if not cosine:
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def keep_trained_tensors_only(module: torch.nn.Module, checkpoint: dict[str, Any]) -> None:
    """Drop frozen tensors from a checkpoint: a LoRA checkpoint then holds only the adapter."""
    trained = {name for name, p in module.named_parameters() if p.requires_grad}
    if len(trained) == sum(1 for _ in module.parameters()):
        return  # full fine-tuning: the whole model is the result
    state = checkpoint["state_dict"]
    checkpoint["state_dict"] = {k: v for k, v in state.items() if k in trained}
    checkpoint["frozen_tensors_omitted"] = True


def fill_frozen_tensors(module: torch.nn.Module, checkpoint: dict[str, Any]) -> None:
    """Complete an adapter-only checkpoint with the frozen base the module was built on.

    Keys the checkpoint holds win; strict loading afterwards still rejects unknown keys and
    wrong shapes, so an adapter can't be loaded onto the wrong base silently.
    """
    if not checkpoint.get("frozen_tensors_omitted"):
        return
    full = module.state_dict()
    full.update(checkpoint["state_dict"])
    checkpoint["state_dict"] = full

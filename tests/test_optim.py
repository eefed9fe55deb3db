"""The optimizer every task builds: fused AdamW (the configs' default) under mixed precision."""

from __future__ import annotations

import functools

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from loralab.tasks.optim import scaled_optimizer

CLIP = 1e-3


class Regression(L.LightningModule):
    """A linear model whose gradients are far above CLIP, so clipping has work to do."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 1)
        self.norms: list[float] = []

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
        x, y = batch
        return nn.functional.mse_loss(self.layer(x).float(), y)

    def configure_optimizers(self):  # noqa: ANN201
        factory = functools.partial(torch.optim.AdamW, lr=0.1, fused=True)
        optimizer = scaled_optimizer(factory, list(self.parameters()))

        def after_step(optimizer, args, kwargs) -> None:  # noqa: ANN001
            grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
            self.norms.append(
                float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
            )

        # the closure runs inside step(): the gradients it stepped on are there afterwards
        optimizer.register_step_post_hook(after_step)
        return optimizer


def test_a_fused_adamw_trains_under_bf16_mixed_with_its_gradients_clipped():
    torch.manual_seed(0)
    x = torch.randn(48, 8)
    data = DataLoader(TensorDataset(x, 100 * x.sum(dim=1, keepdim=True)), batch_size=16)
    module = Regression()
    trainer = L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        gradient_clip_val=CLIP,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=data)
    assert trainer.optimizers[0].defaults["fused"] is True
    assert len(module.norms) == 3 and all(n <= CLIP * 1.001 for n in module.norms), module.norms

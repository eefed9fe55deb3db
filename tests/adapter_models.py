"""Small models and inputs shared by the LoRA-variant tests (not a test module itself)."""

from __future__ import annotations

import torch
from torch import nn

from loralab.lora import lora_layers
from loralab.lora.dora import DoRALinear
from loralab.models import TransformerEncoderClassifier

VOCAB, D_MODEL, D_FF = 40, 32, 64

# every LoRA variant as the adapter config keys that select it
VARIANTS = {
    "lora": {},
    "rslora": {"scaling": "rs"},
    "dora": {"name": "dora"},
    "pissa": {"init": "pissa"},
}


def tiny_backbone(seed: int = 0) -> TransformerEncoderClassifier:
    """The default backbone class, small enough for milliseconds per forward."""
    torch.manual_seed(seed)
    return TransformerEncoderClassifier(
        vocab_size=VOCAB, num_classes=3, d_model=D_MODEL, n_heads=4, n_layers=2, d_ff=D_FF
    )


def adapter_cfg(**overrides) -> dict:
    cfg = {
        "name": "lora",
        "rank": 4,
        "alpha": 8,
        "targets": ["q_proj", "v_proj", "fc1"],
        "trainable": ["classifier"],
    }
    return {**cfg, **overrides}


def token_batch(seed: int = 1, batch: int = 4, length: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (batch, length), generator=generator)


@torch.no_grad()
def pretend_trained(model: nn.Module, seed: int = 2) -> None:
    """Move every adapter (and trained head) away from its init, as training would."""
    generator = torch.Generator().manual_seed(seed)
    for _, layer in lora_layers(model):
        layer.lora_B.add_(0.1 * torch.randn(layer.lora_B.shape, generator=generator))
        layer.lora_A.add_(0.1 * torch.randn(layer.lora_A.shape, generator=generator))
        if isinstance(layer, DoRALinear):
            layer.lora_magnitude.mul_(1 + 0.1 * torch.rand(layer.out_features, generator=generator))
    for name, param in model.named_parameters():
        if param.requires_grad and "lora_" not in name:
            param.add_(0.1 * torch.randn(param.shape, generator=generator))

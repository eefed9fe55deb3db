"""Small models and inputs shared by the LoRA tests (not a test module itself)."""

from __future__ import annotations

import torch
from torch import nn

from loralab.lora import lora_layers
from loralab.lora.variants.dora import DoRALayer
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
        if isinstance(layer, DoRALayer):
            layer.lora_magnitude.mul_(1 + 0.1 * torch.rand(layer.out_features, generator=generator))
    for name, param in model.named_parameters():
        if param.requires_grad and "lora_" not in name:
            param.add_(0.1 * torch.randn(param.shape, generator=generator))


class ToyAttention(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.o_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.q_proj(x) @ self.k_proj(x).transpose(-1, -2) / x.shape[-1] ** 0.5
        return self.o_proj(scores.softmax(-1) @ self.v_proj(x))


class ToyFeedForward(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class ToyBlock(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.attn, self.ffn = ToyAttention(d), ToyFeedForward(d, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.ffn(x)


class ToyTransformer(nn.Module):
    """Transformer-like blocks on float (batch, seq, d) inputs, mean-pooled into a linear head:
    the module names of real models (layers.i.attn.q_proj, ffn.fc1, classifier) in a few
    thousand weights, written out plainly so tests can count them by hand."""

    def __init__(self, d: int = 16, hidden: int = 24, n_layers: int = 2, n_classes: int = 3):
        super().__init__()
        self.layers = nn.ModuleList(ToyBlock(d, hidden) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)
        self.classifier = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.norm(x).mean(dim=1))

"""A tiny pre-LN transformer encoder with a classification head: the default backbone.

Small enough to pretrain on a CPU in a minute, yet built from the same named Linear layers
(`q_proj`, `v_proj`, `fc1`, ...) that LoRA targets in real transformers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from loralab.errors import ConfigError
from loralab.models.blocks import TransformerBlock, init_small_normal

POOLINGS = ("mean", "cls")


class TransformerEncoderClassifier(nn.Module):
    """token + position embeddings -> n_layers pre-LN blocks -> final LN -> pool -> Linear."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int = 256,
        max_len: int = 64,
        dropout: float = 0.0,
        pooling: str = "mean",
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.pooling={pooling!r} is unknown; use one of {list(POOLINGS)}.")
        self.max_len = max_len
        self.pooling = pooling
        self.pad_id = pad_id
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, n_heads, d_ff, dropout) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, num_classes)
        self.apply(init_small_normal)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """input_ids [B, T] -> logits [B, num_classes]; attention_mask is 1/True for real tokens."""
        B, T = input_ids.shape
        if T > self.max_len:
            raise ConfigError(
                f"a sequence of {T} tokens is longer than model.max_len={self.max_len}; "
                "raise model.max_len or shorten the data's sequences."
            )
        mask = (input_ids != self.pad_id) if attention_mask is None else attention_mask.bool()
        pos = torch.arange(T, device=input_ids.device)
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(pos))
        for layer in self.layers:
            x = layer(x, key_padding_mask=mask)
        x = self.ln_f(x)
        return self.classifier(self.pool(x, mask))

    def pool(self, x: Tensor, mask: Tensor) -> Tensor:
        """One vector per sequence: the mean over real tokens, or the first position."""
        if self.pooling == "cls":
            return x[:, 0]
        weights = mask.unsqueeze(-1).to(x.dtype)  # [B, T, 1]
        return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

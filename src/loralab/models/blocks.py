"""Transformer building blocks shared by the encoder classifier and a causal TinyGPT.

The Linear layers carry the names LoRA targets by default (`q_proj`, `k_proj`, `v_proj`,
`o_proj`, `fc1`, `fc2`), so adapter configs read the same for every backbone we ship.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from loralab.errors import ConfigError


def build_attn_mask(key_padding_mask: Tensor, causal: bool) -> Tensor:
    """Boolean mask [B, 1, T, T] (True = may attend) from a [B, T] real-token mask.

    Every query may also attend to itself: a padded query would otherwise see no key at all
    and softmax would turn its row into NaN. Real queries are unaffected (their own key is
    real), and nothing real ever attends to a padded key.
    """
    T = key_padding_mask.shape[-1]
    allowed = key_padding_mask[:, None, None, :].bool()  # [B, 1, 1, T]: keys that are real
    eye = torch.eye(T, dtype=torch.bool, device=key_padding_mask.device)
    if causal:
        past = torch.ones(T, T, dtype=torch.bool, device=key_padding_mask.device).tril()
        return (allowed & past) | eye
    return allowed | eye


def init_small_normal(module: nn.Module) -> None:
    """GPT-2 style init for `model.apply`: small normal weights keep the residual stream well
    scaled at init, whatever the depth."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class LayerCache:
    """One attention layer's keys and values of the tokens seen so far ([B, H, T, head_dim])."""

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def extend(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """The cached keys and values followed by the new ones (which are kept for next time)."""
        if self.keys is not None and self.values is not None:
            keys, values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], 2)
        self.keys, self.values = keys, values
        return keys, values


class KVCache:
    """A causal model's keys and values per layer, so that a new token attends to them instead
    of the model recomputing the whole prefix at every step of a generation."""

    def __init__(self) -> None:
        self.layers: dict[int, LayerCache] = {}

    def layer(self, index: int) -> LayerCache:
        return self.layers.setdefault(index, LayerCache())

    @property
    def length(self) -> int:
        """How many tokens the cache holds (positions 0..length-1)."""
        return self.layers[0].length if self.layers else 0


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention on top of `F.scaled_dot_product_attention`."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        causal: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if n_heads <= 0 or d_model % n_heads != 0:
            raise ConfigError(
                f"model.n_heads={n_heads} must be a positive divisor of model.d_model={d_model}; "
                "pick n_heads so that d_model % n_heads == 0."
            )
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.causal = causal
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, cache: LayerCache | None = None
    ) -> Tensor:
        """x: [B, T, d_model]; key_padding_mask: [B, T], True (or 1) for real tokens.

        With a `cache` (causal attention, no padding), x holds the tokens after the cached
        ones: they attend to the cached keys and values and to each other, causally, and
        their own keys and values are added to the cache.
        """
        B, T, C = x.shape
        q = self.split_heads(self.q_proj(x))
        k = self.split_heads(self.k_proj(x))
        v = self.split_heads(self.v_proj(x))
        dropout_p = self.dropout if self.training else 0.0
        past = cache.length if cache is not None else 0
        if cache is not None:
            if not self.causal or key_padding_mask is not None:
                raise ValueError("a key/value cache is for causal attention without padding")
            k, v = cache.extend(k, v)
        if past:
            # new token t (position past + t) sees every cached key and the new ones up to it
            seen = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if T == 1 else seen, dropout_p=dropout_p
            )
        elif key_padding_mask is None:
            # no padding: let the kernel build the causal mask itself (enables fused paths)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
        else:
            mask = build_attn_mask(key_padding_mask, self.causal)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.o_proj(y)


class FeedForward(nn.Module):
    """The position-wise MLP: expand, GELU, project back."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))


class TransformerBlock(nn.Module):
    """Pre-LN block: normalise, then add attention and MLP outputs to the residual stream."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, causal: bool = False
    ) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, causal=causal)
        self.resid_drop = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, dropout)

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, cache: LayerCache | None = None
    ) -> Tensor:
        x = x + self.resid_drop(self.attn(self.ln1(x), key_padding_mask, cache))
        x = x + self.ffn(self.ln2(x))
        return x

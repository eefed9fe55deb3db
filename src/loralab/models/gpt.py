"""TinyGPT: a small causal, pre-LN transformer language model for character-level text.

It is the encoder's decoder twin: the same `TransformerBlock` (here with `causal=True`, so
`scaled_dot_product_attention` runs with `is_causal`), the same `q_proj`/`k_proj`/`v_proj`/
`o_proj`/`fc1`/`fc2` names LoRA targets, and an `lm_head` that `all-linear` leaves alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from loralab.errors import ConfigError
from loralab.models.blocks import KVCache, TransformerBlock, init_small_normal


class TinyGPT(nn.Module):
    """token + learned position embeddings -> causal pre-LN blocks -> final LN -> lm_head."""

    # generation passes a KVCache (loralab.models.sampling.next_token_logits)
    takes_kv_cache = True

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int = 512,
        max_len: int = 128,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ConfigError(
                f"model.net.vocab_size={vocab_size!r} must be an integer >= 2; it comes from the "
                "data's tokenizer (data.vocab_size), so check data.tokenizer."
            )
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, n_heads, d_ff, dropout, causal=True) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(init_small_normal)
        if tie_weights:
            # one matrix reads tokens in and scores them out: fewer weights, often better LMs
            self.lm_head.weight = self.tok_emb.weight

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """input_ids [B, T] -> next-token logits [B, T, vocab]; position t sees tokens <= t only.

        attention_mask (1/True for real tokens) is for right-padded batches; without it every
        token is real and the attention kernel builds the causal mask itself. With a `cache`
        (generation), input_ids are the tokens after those the cache holds, at the positions
        that follow them, and their keys and values join the cache.
        """
        past = cache.length if cache is not None else 0
        T = past + input_ids.shape[1]
        if T > self.max_len:
            raise ConfigError(
                f"a sequence of {T} tokens is longer than model.max_len={self.max_len}; "
                "raise model.net.max_len or lower data.seq_len."
            )
        pos = torch.arange(past, T, device=input_ids.device)
        x = self.drop(self.tok_emb(input_ids) + self.pos_emb(pos))
        for index, layer in enumerate(self.layers):
            layer_cache = cache.layer(index) if cache is not None else None
            x = layer(x, key_padding_mask=attention_mask, cache=layer_cache)
        return self.lm_head(self.ln_f(x))

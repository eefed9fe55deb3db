"""Tiny causal LMs for tests, written like any hub checkpoint: save_pretrained folders with a
tokenizer (a byte-level BPE trained here in milliseconds), with or without a chat template."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# a chat template in the ChatML style (no default system prompt), written for these tests
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TRAINING_TEXT = [
    "Convert 3 May 2021 to ISO 8601 format. 2021-05-03",
    "What is 12 + 30? 42. How many grams are in 2.5 kg? 2500",
    "Order 48213 was placed by Maria Lopez from Porto. Lopez, Maria ORD-48213",
    "The harbour at dawn: ships, gulls and the old lighthouse keeper.",
    "### Instruction:\n### Response:\n user assistant system",
]


def write_tokenizer(folder: Path, chat: bool = True, vocab_size: int = 400):
    """A byte-level BPE tokenizer saved in `folder`; EOS = pad = <|im_end|> (as SmolLM2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TRAINING_TEXT * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_tiny_llama(folder: Path, chat: bool = True, seed: int = 0, **config) -> Path:
    """A random 2-layer Llama (grouped-query attention, tied embeddings) and its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = write_tokenizer(folder, chat=chat)
    settings = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(LlamaConfig(**{**settings, **config})).save_pretrained(folder)
    return folder


def tiny_tied_llama(adapter: dict | None = None) -> torch.nn.Module:
    """A random 2-layer Llama in memory (tied head), adapted with `adapter` moved off its init
    (B != 0), in eval mode; `{"name": "full"}` or None leaves every weight trainable."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from loralab.lora import apply_adapter

    config = LlamaConfig(
        vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if adapter is not None:
        apply_adapter(model, {**adapter, "trainable": []})
    with torch.no_grad():  # a trained-looking adapter: B != 0
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return model.eval()


def write_tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer GPT-2 and a tokenizer without a chat template (the plain template)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = write_tokenizer(folder, chat=False)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path

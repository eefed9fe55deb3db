"""loralab's LoRA against Hugging Face PEFT's on MiniLM, measured side by side in one process.

Same base model, same batch (32 x 64 tokens), same trainable set (r=8 on query/value plus
the classifier head), same AdamW. Contenders take turns round by round, so a drift of the
machine hits all of them. Prints the ratios the LoRA core is held to:

    loralab LoRA step / PEFT LoRA step            (target <= 1.00)
    loralab LoRA step / full fine-tuning step     (target <= 0.65)
    training memory LoRA / full fine-tuning       (params + grads + Adam + saved activations)
    merged LoRA inference / base inference        (target <= 1.02)
    unmerged LoRA inference / base inference      (target <= 1.10)

    make bench                                  # runs scripts/bench.py, then this
    python scripts/bench_peft.py --rounds 7 --device cuda
    python scripts/bench_peft.py --random-init  # MiniLM's shape, random weights: no model files
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from loralab.lora import apply_adapter, lora_layers, merge_lora
from loralab.measure.step import measure_step_memory, time_call

RANK, ALPHA, TARGETS, HEAD = 8, 16, ["query", "value"], "classifier"
# all-MiniLM-L6-v2's shape, for --random-init where the package is not installed
MINILM_SHAPE = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
}


def build_base(random_init: bool, device: str) -> nn.Module:
    """MiniLM with a 2-class head; `random_init` keeps the shape but skips the weight files."""
    from transformers import BertConfig, BertForSequenceClassification

    if random_init:
        model = BertForSequenceClassification(BertConfig(**MINILM_SHAPE, num_labels=2))
    else:
        from loralab.models.hf import minilm_path  # needs the hf extra (and Hydra)

        model = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    return model.to(device)


def peft_twin(base: nn.Module, ours: nn.Module) -> nn.Module:
    """PEFT's LoRA on a copy of `base`, holding the very A and B that `ours` holds."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, modules_to_save=[HEAD]
    )
    twin = get_peft_model(copy.deepcopy(base), config)
    inner = twin.base_model.model
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            module = inner.get_submodule(name)
            module.lora_A["default"].weight.copy_(layer.lora_A)
            module.lora_B["default"].weight.copy_(layer.lora_B)
    return twin


def train_step(model: nn.Module, batch: dict) -> tuple[Callable[[], None], Callable]:
    """One AdamW step over what requires grad, and the loss function it differentiates."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def loss_of(m: nn.Module) -> torch.Tensor:
        return F.cross_entropy(m(**inputs).logits, batch["labels"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(model).backward()
        optimizer.step()

    return step, loss_of


def synchronized(fn: Callable[[], object], device: str) -> Callable[[], None]:
    """Time the work, not the launch: wait for the GPU before the clock stops."""

    def call() -> None:
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return call


def alternate(fns: dict[str, Callable[[], object]], rounds: int, steps: int) -> dict[str, float]:
    """Median seconds per call of each contender over `rounds` rounds that take turns.

    The order rotates every round, so no contender always runs right after the same one
    (e.g. after full fine-tuning's large optimizer step has flushed the caches).
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            times[name].append(time_call(fns[name], repeats=steps, warmup=1))
    return {name: statistics.median(t) for name, t in times.items()}


def make_batch(vocab_size: int, batch: int, seq_len: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab_size, (batch, seq_len), generator=g)  # no special tokens
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": torch.randint(0, 2, (batch,), generator=g).to(device),
    }


def contenders(base: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module, str]:
    """loralab's LoRA, PEFT's twin of it and full fine-tuning, each on its own copy of base."""
    ours, full = copy.deepcopy(base), copy.deepcopy(base)
    adapter = {"name": "lora", "rank": RANK, "alpha": ALPHA, "targets": TARGETS}
    report = apply_adapter(ours, {**adapter, "trainable": [HEAD]})
    apply_adapter(full, {"name": "full"})
    with torch.no_grad():  # a trained-looking adapter, not B = 0
        for _, layer in lora_layers(ours):
            layer.lora_B.normal_(0.0, 0.02)
    peft = peft_twin(base, ours)
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, peft)]
    assert trainable[0] == trainable[1], trainable  # the same trainable set
    return ours, peft, full, report.summary()


def measure_training(models: dict[str, nn.Module], batch: dict, args: argparse.Namespace):
    """Step times of every model, and the training memory of loralab's LoRA and of full."""
    steps = {name: train_step(model, batch) for name, model in models.items()}
    times = alternate(
        {name: synchronized(step, args.device) for name, (step, _) in steps.items()},
        args.rounds,
        args.steps,
    )
    memory = {
        name: measure_step_memory(models[name], steps[name][1]) for name in ("loralab", "full")
    }
    return times, memory


def measure_inference(models: dict[str, nn.Module], batch: dict, args: argparse.Namespace):
    """Forward times in eval mode without autograd, the way a model serves."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    for model in models.values():
        model.eval()
    calls = {
        name: synchronized(lambda m=model: m(**inputs), args.device)
        for name, model in models.items()
    }
    with torch.inference_mode():
        return alternate(calls, args.rounds, args.steps)


def run(args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    base = build_base(args.random_init, args.device)
    batch = make_batch(base.config.vocab_size, args.batch_size, args.seq_len, args.device)
    ours, peft, full, summary = contenders(base)
    train, memory = measure_training({"loralab": ours, "peft": peft, "full": full}, batch, args)
    merged = copy.deepcopy(ours)
    merge_lora(merged)
    # every contender runs on a copy, so none keeps the loader's (maybe memory-mapped) tensors
    plain = copy.deepcopy(base)
    infer = measure_inference(
        {"base": plain, "merged": merged, "unmerged": ours, "peft_unmerged": peft}, batch, args
    )
    weights = "random init" if args.random_init else "pretrained"
    print(
        f"MiniLM ({weights}) on {args.device}, batch {args.batch_size} x {args.seq_len}; {summary}"
    )
    print(f"medians over {args.rounds} alternating rounds of {args.steps} calls")
    print("train step ms: " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in train.items()))
    print("inference ms:  " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in infer.items()))
    mib = ", ".join(f"{k} {v.total / 2**20:.1f}" for k, v in memory.items())
    print(f"training memory MiB (params + grads + Adam + saved activations): {mib}")
    return {
        "lora_step / peft_step": train["loralab"] / train["peft"],
        "lora_step / full_step": train["loralab"] / train["full"],
        "lora_memory / full_memory": memory["loralab"].total / memory["full"].total,
        "merged_inference / base": infer["merged"] / infer["base"],
        "unmerged_inference / base": infer["unmerged"] / infer["base"],
        "peft_unmerged_inference / base": infer["peft_unmerged"] / infer["base"],
    }


TARGETS_BY_RATIO = {
    "lora_step / peft_step": 1.00,
    "lora_step / full_step": 0.65,
    "merged_inference / base": 1.02,
    "unmerged_inference / base": 1.10,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed calls per round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the ratios here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ratios = run(args)
    print(f"{'ratio':<34}{'value':>8}{'target':>10}")
    for name, value in ratios.items():
        target = TARGETS_BY_RATIO.get(name)
        verdict = "" if target is None else ("  ok" if value <= target else "  MISSED")
        shown = "" if target is None else f"<= {target:.2f}"
        print(f"{name:<34}{value:>8.3f}{shown:>10}{verdict}")
    if args.json:
        args.json.write_text(json.dumps(ratios, indent=2))


if __name__ == "__main__":
    main()

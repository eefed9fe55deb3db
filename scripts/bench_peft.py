"""loralab's LoRA against Hugging Face PEFT's, measured side by side in one process.

Two models: MiniLM (BERT, `nn.Linear`; r=8 on query/value plus the classifier head, batch
32 x 64 tokens) and GPT-2's shape (124M parameters, random weights built from GPT2Config:
nothing is downloaded; r=8 on the transformers `Conv1D` c_attn plus the score head, batch
4 x 64). Same base model, same batch, same trainable set, same A and B, same AdamW for both
libraries. Contenders take turns round by round, so a drift of the machine hits all of them.
Prints the ratios the LoRA core is held to:

    loralab LoRA step / PEFT LoRA step            (target <= 0.90)
    the floor step / PEFT LoRA step               (the best any LoRA could reach, see below)
    loralab LoRA step / full fine-tuning step     (target <= 0.62; MiniLM)
    training memory LoRA / full fine-tuning       (params + grads + Adam + saved activations)
    merged LoRA inference / base inference        (target <= 1.02)
    unmerged LoRA inference / base inference      (target <= 1.10)

    make bench                                  # runs scripts/bench.py, then this for both models
    python scripts/bench_peft.py --rounds 7 --device cuda
    python scripts/bench_peft.py --random-init  # MiniLM's shape, random weights: no model files
    python scripts/bench_peft.py --model gpt2   # GPT-2 124M (random weights), LoRA on c_attn
    python scripts/bench_peft.py --compile      # + both compiled (regional, inductor)

The *floor* is the base with the same head training and a gradient asked for at every
adapted module's output, but no adapter at all: the forward and backward through the frozen
base that any LoRA must pay. loralab / PEFT cannot go below floor / PEFT, however cheap the
adapter's own matmuls become.

`--compile` adds loralab and PEFT compiled the same way (`loralab.run.compiled.compile_model`:
each transformer layer's forward through torch.compile, inductor), and the ratio of the two.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from loralab.lora import apply_adapter, lora_layers, merge_lora
from loralab.measure.step import measure_step_memory

RANK, ALPHA = 8, 16
# all-MiniLM-L6-v2's shape, for --random-init where the package is not installed
MINILM_SHAPE = {
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
}
# GPT-2 small (124M): GPT2Config's own defaults; the tests shrink it
GPT2_SHAPE: dict[str, int] = {}


class BenchModel(NamedTuple):
    """One model of the benchmark: how to build it and what LoRA adapts on it."""

    title: str
    targets: list[str]
    head: str
    build: Callable[[bool, str], nn.Module]
    batch_size: int
    with_full: bool  # also time full fine-tuning (and the memory ratio)
    random_weights: bool  # built from its config alone, whatever --random-init says


def build_minilm(random_init: bool, device: str) -> nn.Module:
    """MiniLM with a 2-class head; `random_init` keeps the shape but skips the weight files."""
    from transformers import BertConfig, BertForSequenceClassification

    if random_init:
        model = BertForSequenceClassification(BertConfig(**MINILM_SHAPE, num_labels=2))
    else:
        from loralab.models.hf import minilm_path  # needs the hf extra (and Hydra)

        model = BertForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)
    return model.to(device)


def build_gpt2(random_init: bool, device: str) -> nn.Module:
    """GPT-2's shape with a 2-class `score` head, random weights (its timing does not depend
    on the values, and nothing has to be downloaded)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(**GPT2_SHAPE, num_labels=2, pad_token_id=0)
    return GPT2ForSequenceClassification(config).to(device)


MODELS = {
    "minilm": BenchModel("MiniLM", ["query", "value"], "classifier", build_minilm, 32, True, False),
    "gpt2": BenchModel("GPT-2", ["c_attn"], "score", build_gpt2, 4, False, True),
}


def peft_twin(base: nn.Module, ours: nn.Module, bench: BenchModel) -> nn.Module:
    """PEFT's LoRA on a copy of `base`, holding the very A and B that `ours` holds."""
    from peft import LoraConfig, get_peft_model

    fan_in_fan_out = any(layer.layer_type.fan_in_fan_out for _, layer in lora_layers(ours))
    config = LoraConfig(
        r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=bench.targets,
        modules_to_save=[bench.head], fan_in_fan_out=fan_in_fan_out,
    )  # fmt: skip
    twin = get_peft_model(copy.deepcopy(base), config)
    inner = twin.base_model.model
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            module = inner.get_submodule(name)
            module.lora_A["default"].weight.copy_(layer.lora_A)
            module.lora_B["default"].weight.copy_(layer.lora_B)
    return twin


def frozen_base_floor(base: nn.Module, targets: list[str], head: str | None) -> nn.Module:
    """The step no LoRA can beat: a copy of `base` with only `head` trainable, whose `targets`
    modules' outputs ask for a gradient as a LoRA's would (a forward hook marks them), while
    no adapter matmul runs. Its step is the frozen base's forward and backward plus the head's,
    which every LoRA implementation pays; the rest of a LoRA step is the adapter's own."""
    floor = copy.deepcopy(base)
    for param in floor.parameters():
        param.requires_grad_(False)
    for name, module in floor.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == head:
            for param in module.parameters():
                param.requires_grad_(True)
        if leaf in targets:
            module.register_forward_hook(_wants_a_gradient)
    return floor


def _wants_a_gradient(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and not output.requires_grad:
        output.requires_grad_()  # a frozen first layer: the gradient stops here, as LoRA's would
    return output


def train_step(model: nn.Module, batch: dict) -> tuple[Callable[[], None], Callable]:
    """One AdamW step over what requires grad, and the loss function it differentiates."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=1e-4,
        fused=True,  # as training
    )
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


def alternate(
    fns: dict[str, Callable[[], object]], rounds: int, steps: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender over its `rounds` x `steps` timed calls.

    Each contender is called `warmup` times untimed first (its first step allocates the
    optimizer state, a compiled one compiles); then the contenders take turns, `steps` calls
    each per round, and the order rotates every round, so no contender always runs right after
    the same one (e.g. after full fine-tuning's large optimizer step).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            for _ in range(steps):
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def make_batch(vocab_size: int, batch: int, seq_len: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab_size, (batch, seq_len), generator=g)  # no special tokens
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": torch.randint(0, 2, (batch,), generator=g).to(device),
    }


def contenders(base: nn.Module, bench: BenchModel) -> tuple[nn.Module, nn.Module, nn.Module, str]:
    """loralab's LoRA, PEFT's twin of it and full fine-tuning, each on its own copy of base."""
    ours, full = copy.deepcopy(base), copy.deepcopy(base)
    adapter = {"name": "lora", "rank": RANK, "alpha": ALPHA, "targets": bench.targets}
    report = apply_adapter(ours, {**adapter, "trainable": [bench.head]})
    apply_adapter(full, {"name": "full"})
    with torch.no_grad():  # a trained-looking adapter, not B = 0
        for _, layer in lora_layers(ours):
            layer.lora_B.normal_(0.0, 0.02)
    peft = peft_twin(base, ours, bench)
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, peft)]
    assert trainable[0] == trainable[1], trainable  # the same trainable set
    return ours, peft, full, report.summary()


def compiled_twins(ours: nn.Module, peft: nn.Module, backend: str) -> tuple[nn.Module, nn.Module]:
    """Copies of both LoRA models with their repeated blocks compiled by `backend`."""
    from loralab.run.compiled import compile_model

    twins = copy.deepcopy(ours), copy.deepcopy(peft)
    for twin in twins:
        compile_model(twin, backend=backend)
    return twins


def compile_seconds(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds of the first call of each compiled contender (`*_compiled`): what compiling
    its blocks costs once, printed; the timed rounds come after it."""
    seconds = {}
    for name in (n for n in fns if n.endswith("_compiled")):
        start = time.perf_counter()
        fns[name]()
        seconds[name] = time.perf_counter() - start
    if seconds:
        print("first step s (compiles): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    return seconds


def measure_training(models: dict[str, nn.Module], batch: dict, args: argparse.Namespace):
    """Step times of every model, and the training memory of loralab's LoRA and of full."""
    steps = {name: train_step(model, batch) for name, model in models.items()}
    calls = {name: synchronized(step, args.device) for name, (step, _) in steps.items()}
    compile_seconds(calls)  # then a compiled block may recompile at its second call: warm-up
    times = alternate(calls, args.rounds, args.steps)
    memory = {
        name: measure_step_memory(models[name], steps[name][1])
        for name in ("loralab", "full")
        if name in models
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
    bench = MODELS[getattr(args, "model", "minilm")]
    torch.manual_seed(0)
    base = bench.build(args.random_init, args.device)
    batch_size = args.batch_size or bench.batch_size
    batch = make_batch(base.config.vocab_size, batch_size, args.seq_len, args.device)
    ours, peft, full, summary = contenders(base, bench)
    trained = {"loralab": ours, "peft": peft, **({"full": full} if bench.with_full else {})}
    trained["floor"] = frozen_base_floor(base, bench.targets, bench.head)
    compiled = getattr(args, "compile", False)
    if compiled:  # the same A and B, each library's layers compiled the same way
        twins = compiled_twins(ours, peft, getattr(args, "compile_backend", "inductor"))
        trained["loralab_compiled"], trained["peft_compiled"] = twins
    train, memory = measure_training(trained, batch, args)
    merged = copy.deepcopy(ours)
    merge_lora(merged)
    # every contender runs on a copy, so none keeps the loader's (maybe memory-mapped) tensors
    plain = copy.deepcopy(base)
    infer = measure_inference(
        {"base": plain, "merged": merged, "unmerged": ours, "peft_unmerged": peft}, batch, args
    )
    params = sum(p.numel() for p in base.base_model.parameters())
    weights = "random init" if args.random_init or bench.random_weights else "pretrained"
    print(
        f"{bench.title} ({params / 1e6:.1f}M parameters, {weights}) on {args.device}, batch "
        f"{batch_size} x {args.seq_len}; {summary}"
    )
    print(
        f"medians of {args.rounds} alternating rounds x {args.steps} calls, after untimed first calls"
    )
    print("train step ms: " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in train.items()))
    print("inference ms:  " + ", ".join(f"{k} {1e3 * v:.1f}" for k, v in infer.items()))
    ratios = {
        "lora_step / peft_step": train["loralab"] / train["peft"],
        # the best any LoRA could do against PEFT: its adapter for free, only the frozen base
        "floor_step / peft_step": train["floor"] / train["peft"],
        "lora_step / floor_step": train["loralab"] / train["floor"],
    }
    if compiled:
        ratios["compiled: lora_step / peft_step"] = (
            train["loralab_compiled"] / train["peft_compiled"]
        )
        ratios["lora_step compiled / eager"] = train["loralab_compiled"] / train["loralab"]
    if bench.with_full:
        mib = ", ".join(f"{k} {v.total / 2**20:.1f}" for k, v in memory.items())
        print(f"training memory MiB (params + grads + Adam + saved activations): {mib}")
        ratios["lora_step / full_step"] = train["loralab"] / train["full"]
        # the best any LoRA could do against full fine-tuning on this step
        ratios["floor_step / full_step"] = train["floor"] / train["full"]
        ratios["lora_memory / full_memory"] = memory["loralab"].total / memory["full"].total
    return {
        **ratios,
        "merged_inference / base": infer["merged"] / infer["base"],
        "unmerged_inference / base": infer["unmerged"] / infer["base"],
        "peft_unmerged_inference / base": infer["peft_unmerged"] / infer["base"],
    }


# the goals of issue 20: ahead of PEFT by 10% (eager, or both compiled), LoRA near its FLOP
# bound against full fine-tuning
TARGETS_BY_RATIO = {
    "lora_step / peft_step": 0.90,
    "compiled: lora_step / peft_step": 0.90,
    "lora_step / full_step": 0.62,
    "merged_inference / base": 1.02,
    "unmerged_inference / base": 1.10,
}


def report_ratios(
    ratios: dict[str, float], targets: dict[str, float], json_path: Path | None = None
) -> None:
    """Print each ratio beside its target (ok / MISSED); also write them to `json_path`."""
    width = max(len("ratio"), *map(len, ratios)) + 4
    print(f"{'ratio':<{width}}{'value':>8}{'target':>10}")
    for name, value in ratios.items():
        target = targets.get(name)
        verdict = "" if target is None else ("  ok" if value <= target else "  MISSED")
        shown = "" if target is None else f"<= {target:.2f}"
        print(f"{name:<{width}}{value:>8.3f}{shown:>10}{verdict}")
    if json_path:
        json_path.write_text(json.dumps(ratios, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed calls per round")
    parser.add_argument("--model", choices=sorted(MODELS), default="minilm")
    parser.add_argument("--batch-size", type=int, help="default: 32 (MiniLM), 4 (GPT-2)")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the ratios here")
    parser.add_argument("--compile", action="store_true", help="also time both compiled")
    parser.add_argument("--compile-backend", default="inductor")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report_ratios(run(args), TARGETS_BY_RATIO, args.json)


if __name__ == "__main__":
    main()

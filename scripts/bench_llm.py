"""LoRA against full fine-tuning and against PEFT on SmolLM2-135M, measured side by side.

The converted model (checkpoints/smollm2-135m-instruct/) when it is there, else a model of
its shape with random weights (step times and memory do not depend on the values). One
batch of random token ids, LoRA r=8 on q_proj, v_proj for loralab and for PEFT (the same
A and B), full fine-tuning of everything, AdamW for all. Step times come from contenders
taking turns round by round in one process; the train state (weights + gradients + Adam
state, counted from the tensors) from that process too; the peak resident memory of a
step from one fresh process per contender, which holds nothing else. QLoRA (NF4, double
quantization, the same A and B) is timed beside them for a training step and for an
evaluation pass: greedy generation of `--new-tokens` tokens for `--eval-batches` batches of
prompts with the key/value cache, each quantized layer dequantized once for the pass as
loralab's evaluation does (`--per-token-dequant` adds QLoRA dequantizing at every token).
The floor (`bench_peft.frozen_base_floor`) is the step of the frozen base alone, with the
gradient asked for where LoRA's would be: what no LoRA implementation can go below.

    make bench                              # after scripts/bench.py and scripts/bench_peft.py
    python scripts/bench_llm.py --rounds 7 --batch-size 8 --per-token-dequant
    python scripts/bench_llm.py --random-init --device cuda
    python scripts/bench_llm.py --compile     # + loralab and PEFT compiled (regional, inductor)
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_peft import (  # scripts/ is on a script's path
    alternate,
    compile_seconds,
    compiled_twins,
    frozen_base_floor,
    report_ratios,
    synchronized,
)
from torch import nn

from loralab.lora import apply_adapter, lora_layers
from loralab.measure.step import train_state_bytes

RANK, ALPHA, TARGETS = 8, 16, ["q_proj", "v_proj"]
FOLDER = Path(__file__).resolve().parents[1] / "checkpoints" / "smollm2-135m-instruct"
# SmolLM2-135M's shape, for --random-init or when the converted folder is absent
SMOLLM2_SHAPE = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
    "tie_word_embeddings": True,
}
# the goals of issue 20: ahead of PEFT by 10%, LoRA q,v near its FLOP bound against full
TARGETS_BY_RATIO = {
    "lora_step / full_step": 0.55,
    "lora_step / peft_step": 0.90,
    "compiled: lora_step / peft_step": 0.90,
    "qlora_eval / lora_eval": 1.30,
}


def build_base(random_init: bool, device: str) -> tuple[nn.Module, str]:
    """SmolLM2 in training mode without a key/value cache, and where its weights came from."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if random_init or not (FOLDER / "config.json").is_file():
        torch.manual_seed(0)
        model, weights = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE)), "random init"
    else:
        model, weights = AutoModelForCausalLM.from_pretrained(FOLDER), "pretrained"
    model.config.use_cache = False
    return model.to(device).train(), weights


def lora_config() -> dict:
    return {"name": "lora", "rank": RANK, "alpha": ALPHA, "targets": TARGETS, "trainable": []}


def peft_twin(base: nn.Module, ours: nn.Module) -> nn.Module:
    """PEFT's LoRA on a copy of `base`, holding the very A and B that `ours` holds."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS)
    twin = get_peft_model(copy.deepcopy(base), config)
    inner = twin.base_model.model
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            module = inner.get_submodule(name)
            module.lora_A["default"].weight.copy_(layer.lora_A)
            module.lora_B["default"].weight.copy_(layer.lora_B)
    return twin


def make_batch(batch: int, seq_len: int, device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, SMOLLM2_SHAPE["vocab_size"], (batch, seq_len), generator=g).to(device)


def training_step(model: nn.Module, ids: torch.Tensor):
    """One AdamW step on next-token cross-entropy, and the optimizer it steps."""
    trained = [p for p in model.parameters() if p.requires_grad]
    # fused as training; the floor trains nothing, so it has no optimizer to step
    optimizer = torch.optim.AdamW(trained, lr=1e-5, fused=True) if trained else None

    def step() -> None:
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits
        F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        if optimizer is not None:
            optimizer.step()

    return step, optimizer


def qlora_twin(base: nn.Module, ours: nn.Module) -> nn.Module:
    """QLoRA (NF4, double quantization) on a copy of `base`, holding the A and B of `ours`."""
    twin = copy.deepcopy(base)
    apply_adapter(twin, {**lora_config(), "quant": "nf4", "double_quant": True})
    with torch.no_grad():
        for (_, layer), (_, own) in zip(lora_layers(twin), lora_layers(ours), strict=True):
            layer.lora_A.copy_(own.lora_A)
            layer.lora_B.copy_(own.lora_B)
    return twin


def evaluation_pass(model: nn.Module, batches: list[torch.Tensor], new_tokens: int, hold: bool):
    """One evaluation pass: greedy generation of exactly `new_tokens` tokens for every batch of
    prompts, with the key/value cache. `hold`: quantized layers dequantized once for the pass,
    as loralab's evaluation does (`generate_many`); else once per token."""
    from contextlib import nullcontext

    from loralab.models.held_casts import held_casts, held_copies

    def call() -> None:
        held_copies(model).clear()  # one dequantization per pass, not one for all the rounds
        with torch.no_grad(), held_casts(model) if hold else nullcontext():
            for ids in batches:
                model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens, do_sample=False, use_cache=True, pad_token_id=0,
                )  # fmt: skip

    return call


def peak_rss_of_a_step(methods: list[str], args: argparse.Namespace) -> dict[str, int]:
    """Per method, in a fresh process of its own: build the model, adapt it, run two steps;
    the process's peak RSS in bytes. The processes run side by side (one thread each): the
    peak of one does not depend on the other, and the benchmark takes half the time."""
    context = multiprocessing.get_context("spawn")
    jobs = [(method, args.random_init, args.batch_size, args.seq_len) for method in methods]
    with context.Pool(len(methods), maxtasksperchild=1) as pool:
        return dict(zip(methods, pool.starmap(_child_peak_rss, jobs), strict=True))


def _child_peak_rss(method: str, random_init: bool, batch: int, seq_len: int) -> int:
    torch.set_num_threads(1)  # the timing is not measured here; memory does not need threads
    model, _ = build_base(random_init, "cpu")
    apply_adapter(model, lora_config() if method == "lora" else {"name": "full"})
    step, _ = training_step(model, make_batch(batch, seq_len, "cpu"))
    step()
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run(args: argparse.Namespace) -> dict[str, float]:
    rss = peak_rss_of_a_step(["lora", "full"], args)
    base, weights = build_base(args.random_init, args.device)
    ids = make_batch(args.batch_size, args.seq_len, args.device)
    ours, full = copy.deepcopy(base), copy.deepcopy(base)
    apply_adapter(ours, lora_config())
    apply_adapter(full, {"name": "full"})
    with torch.no_grad():  # a trained-looking adapter, not B = 0
        for _, layer in lora_layers(ours):
            layer.lora_B.normal_(0.0, 0.02)
    peft = peft_twin(base, ours)
    qlora = qlora_twin(base, ours)
    floor = frozen_base_floor(base, TARGETS, head=None)
    del base
    models = {"loralab": ours, "peft": peft, "full": full, "qlora": qlora, "floor": floor}
    if args.compile:  # the same A and B, each library's decoder layers compiled the same way
        models["loralab_compiled"], models["peft_compiled"] = compiled_twins(ours, peft, "inductor")
    steps = {name: training_step(model, ids) for name, model in models.items()}
    calls = {name: synchronized(step, args.device) for name, (step, _) in steps.items()}
    compile_seconds(calls)  # then a compiled block may recompile at its second call: warm-up
    times = alternate(calls, args.rounds, args.steps)
    state = {
        name: train_state_bytes(models[name], [steps[name][1]]) for name in ("loralab", "full")
    }
    prompts = make_batch(args.batch_size * args.eval_batches, args.seq_len // 2, args.device)
    batches = list(prompts.split(args.batch_size))
    for model in (ours, qlora):
        model.eval()
    generation = {
        "lora": evaluation_pass(ours, batches, args.new_tokens, hold=True),
        "qlora": evaluation_pass(qlora, batches, args.new_tokens, hold=True),
    }
    if args.per_token_dequant:
        generation["qlora_per_token"] = evaluation_pass(qlora, batches, args.new_tokens, False)
    evals = alternate(
        {name: synchronized(call, args.device) for name, call in generation.items()},
        args.rounds,
        args.steps,
    )
    print(
        f"SmolLM2-135M ({weights}) on {args.device}, batch {args.batch_size} x {args.seq_len}; "
        f"LoRA r={RANK} alpha={ALPHA} on {','.join(TARGETS)}"
    )
    print(
        f"medians of {args.rounds} alternating rounds x {args.steps} steps, after untimed first steps"
    )
    print("train step ms: " + ", ".join(f"{k} {1e3 * v:.0f}" for k, v in times.items()))
    print(
        f"evaluation pass ms ({args.eval_batches} batches of {args.batch_size} prompts of "
        f"{args.seq_len // 2} tokens, {args.new_tokens} new tokens each): "
        + ", ".join(f"{k} {1e3 * v:.0f}" for k, v in evals.items())
    )
    print("train state MiB: " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in state.items()))
    print(
        "peak RSS MiB (fresh process each): "
        + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in rss.items())
    )
    ratios = {
        "lora_step / full_step": times["loralab"] / times["full"],
        "lora_step / peft_step": times["loralab"] / times["peft"],
        "floor_step / peft_step": times["floor"] / times["peft"],
        "lora_step / floor_step": times["loralab"] / times["floor"],
        # the best any LoRA could do against full fine-tuning on this step
        "floor_step / full_step": times["floor"] / times["full"],
        "lora_train_state / full_train_state": state["loralab"] / state["full"],
        "lora_peak_rss / full_peak_rss": rss["lora"] / rss["full"],
        "qlora_step / lora_step": times["qlora"] / times["loralab"],
        "qlora_eval / lora_eval": evals["qlora"] / evals["lora"],
    }
    if args.per_token_dequant:
        per_token = evals["qlora_per_token"] / evals["lora"]
        ratios["qlora_eval per-token dequantization / lora_eval"] = per_token
    if args.compile:
        ratios["compiled: lora_step / peft_step"] = (
            times["loralab_compiled"] / times["peft_compiled"]
        )
        ratios["lora_step compiled / eager"] = times["loralab_compiled"] / times["loralab"]
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per round")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=8, help="generated per prompt")
    parser.add_argument("--eval-batches", type=int, default=2, help="batches of one evaluation")
    parser.add_argument(
        "--per-token-dequant", action="store_true", help="also QLoRA dequantizing per token"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-init", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the ratios here")
    parser.add_argument("--compile", action="store_true", help="also time both compiled")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    report_ratios(run(args), TARGETS_BY_RATIO, args.json)


if __name__ == "__main__":
    main()

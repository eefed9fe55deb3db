"""Where a LoRA step and an evaluation of SmolLM2 spend their time: torch.profiler's top operators.

One AdamW step of LoRA r=8 on q_proj, v_proj (batch 4 x 64, as scripts/bench_llm.py) and one
greedy generation of 16 tokens for 8 prompts of 32 tokens with the key/value cache (as the
exact-match evaluation generates), each after a warm-up call, profiled on the CPU. Prints,
per phase, the operators by self CPU time with their share of the phase's total:

    python scripts/profile_llm.py                    # the converted SmolLM2 (or its shape)
    python scripts/profile_llm.py --adapter qlora    # NF4 base: what dequantization costs
    python scripts/profile_llm.py --tiny             # a 2-layer Llama, for a quick look
    python scripts/profile_llm.py --bf16 --answer-tokens 8   # as `make llm` trains now

--answer-tokens N gives each row a loss on its last N positions only (an instruction's answer
after a prompt), and the output head scores those rows only, as loralab's language-modelling
task does; --bf16 runs both phases under bfloat16 autocast (trainer.precision=bf16-mixed).
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
import torch.nn.functional as F
from bench_llm import SMOLLM2_SHAPE, build_base  # scripts/ is on a script's path
from torch.profiler import ProfilerActivity, profile

from loralab.lora import apply_adapter
from loralab.models.held_casts import held_casts
from loralab.tasks.language_modeling import head_on_rows

ADAPTERS = {
    "lora": {"name": "lora", "rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj"]},
    "lora_all": {"name": "lora", "rank": 16, "alpha": 32, "targets": "all-linear"},
    "qlora": {"name": "lora", "rank": 16, "alpha": 32, "targets": "all-linear", "quant": "nf4",
              "double_quant": True},
    "full": {"name": "full"},
}  # fmt: skip
TINY_SHAPE = {**SMOLLM2_SHAPE, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 16, "vocab_size": 512}  # fmt: skip


def top_operators(prof: profile, limit: int) -> list[tuple[str, float, float]]:
    """(operator, self CPU ms, share of the phase) for the `limit` costliest operators."""
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / 1e3, e.self_cpu_time_total / total)
            for e in events[:limit]]  # fmt: skip


def profiled(fn, limit: int) -> tuple[float, list[tuple[str, float, float]]]:
    """Wall ms of one call of `fn` (after a warm-up call) and its top operators."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3
    return total, top_operators(prof, limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", choices=sorted(ADAPTERS), default="lora")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer Llama of random weights")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast, both phases")
    parser.add_argument("--answer-tokens", type=int, default=None,
                        help="the loss on each row's last N positions only (default: all)")  # fmt: skip
    args = parser.parse_args()
    if args.tiny:
        import bench_llm

        bench_llm.SMOLLM2_SHAPE = TINY_SHAPE
    base, weights = build_base(args.tiny, "cpu")
    model = copy.deepcopy(base)
    del base
    apply_adapter(model, {**ADAPTERS[args.adapter], "trainable": []})
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (4, 64), generator=g)
    prompts = torch.randint(3, vocab, (8, 32), generator=g)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=1e-5,
        fused=True,  # as training
    )
    counted = torch.zeros_like(ids, dtype=torch.bool)  # positions whose next token is scored
    counted[:, -(args.answer_tokens or ids.shape[1]) - 1 : -1] = True
    targets = ids.roll(-1, dims=1)[counted]

    def autocast():
        bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
        return bf16 if args.bf16 else contextlib.nullcontext()

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        # as loralab's task forward: under autocast the frozen weights' casts are held
        with autocast(), held_casts(model), head_on_rows(model, counted):
            logits = model(input_ids=ids).logits
        logits = logits if logits.dim() == 2 else logits[counted]
        F.cross_entropy(logits.float(), targets).backward()
        optimizer.step()

    def evaluate() -> None:
        model.eval()
        # as loralab's evaluation: a quantized base dequantized, frozen weights cast, once
        with torch.no_grad(), autocast(), held_casts(model):
            model.generate(
                input_ids=prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=16,
                min_new_tokens=16, do_sample=False, use_cache=True, pad_token_id=0,
            )  # fmt: skip

    answers = (
        f"loss on the last {args.answer_tokens} positions"
        if args.answer_tokens
        else "loss everywhere"
    )
    print(f"SmolLM2-135M's shape ({'tiny' if args.tiny else weights}), {args.adapter}, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, {answers}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for phase, fn in (("train step (4 x 64)", step), ("evaluation (8 x 32 + 16 new)", evaluate)):
        total, rows = profiled(fn, args.top)
        print(f"\n{phase}: {total:.0f} ms of operator self time")
        print(f"{'operator':<44}{'self ms':>10}{'share':>8}")
        for name, ms, share in rows:
            print(f"{name[:43]:<44}{ms:>10.1f}{share:>8.1%}")


if __name__ == "__main__":
    main()

"""`python -m loralab.memory`: how much memory full fine-tuning, LoRA and QLoRA need.

    python -m loralab.memory                                  # Llama-2-7B shape, batch 1 x 512, bf16
    python -m loralab.memory --size 13b --batch 4 --seq-len 1024 --rank 16 --targets q,k,v,o
    python -m loralab.memory --params 3e9                     # any size: a Llama-like shape
    python -m loralab.memory --hf-config path/to/config.json  # Llama/Mistral/Qwen, GPT-2, BERT
    python -m loralab.memory --model tiny_encoder --batch 64 --seq-len 32 --dtype fp32
    python -m loralab.memory --plot memory.png                # also a stacked bar chart

It prints one row per method: weights, gradients, optimizer state (Adam moments and, in
half precision, fp32 master weights), activations and the total, in GB (10^9 bytes).
The arithmetic is in loralab.measure.planner; tests/test_memory_planner.py checks it against
measured steps (loralab.measure.step.measure_step_memory).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from loralab.errors import UserError
from loralab.measure.hf_config import shape_from_hf_config
from loralab.measure.planner import (
    DTYPE_BYTES,
    MemoryEstimate,
    Method,
    ModelShape,
    Workload,
    estimate,
)

GB = 1e9
# Llama 2 shapes; `--size 7b` etc.
PRESETS = {
    "1b": dict(hidden=2048, layers=22, heads=32, kv_heads=4, ffn=5632),  # TinyLlama 1.1B
    "7b": dict(hidden=4096, layers=32, heads=32, ffn=11008),
    "13b": dict(hidden=5120, layers=40, heads=40, ffn=13824),
    "70b": dict(hidden=8192, layers=80, heads=64, kv_heads=8, ffn=28672),
}


def llama_shape(name: str, **dims: int) -> ModelShape:
    """A decoder-only LM in the Llama layout: SwiGLU, RMSNorm, rotary positions, no biases."""
    return ModelShape(
        name=name,
        vocab_size=dims.pop("vocab_size", 32000),
        gated_mlp=True,
        bias=False,
        rms_norm=True,
        head="lm",
        padding_mask=False,
        **dims,
    )


def shape_for_params(n_params: float) -> ModelShape:
    """The Llama-like shape (width a multiple of 256, depth = width / 128) nearest in size."""
    best: ModelShape | None = None
    for hidden in range(256, 32768 + 1, 256):
        ffn = 256 * math.ceil(8 * hidden / 3 / 256)
        layers = max(2, hidden // 128)
        shape = llama_shape(
            f"{n_params / 1e9:g}B", hidden=hidden, layers=layers, heads=hidden // 128, ffn=ffn
        )
        if best is None or abs(shape.params() - n_params) < abs(best.params() - n_params):
            best = shape
    assert best is not None
    return best


def shape_from_model_config(name: str, overrides: Sequence[str] = ()) -> ModelShape:
    """A model of this project's configs/model/ (composed as `python -m loralab.train` would)."""
    from hydra import compose, initialize_config_dir

    from loralab.run.resolvers import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", *overrides])
    model, num_classes = cfg.model, int(cfg.data.get("num_classes", 2))
    if "net" in model:  # our TransformerEncoderClassifier
        net = model.net
        return ModelShape(
            name=name,
            vocab_size=net.vocab_size,
            hidden=net.d_model,
            layers=net.n_layers,
            heads=net.n_heads,
            ffn=net.d_ff,
            max_positions=net.max_len,
            num_classes=num_classes,
        )
    folder = Path(str(model.pretrained_model_name_or_path))
    return shape_from_hf_config(folder / "config.json", num_classes)


def format_table(shape: ModelShape, workload: Workload, rows: dict[str, MemoryEstimate]) -> str:
    """A plain-text table, one row per method, in GB."""
    title = (
        f"{shape.name}: {shape.params() / 1e9:.3g}B parameters, batch {workload.batch} x "
        f"{workload.seq_len} tokens, {workload.dtype}, Adam"
    )
    header = (
        f"{'method':<18}{'trainable':>14}{'weights':>10}{'grads':>10}{'optimizer':>11}"
        f"{'activations':>13}{'total':>10}"
    )
    lines = [title, header, "-" * len(header)]
    for label, m in rows.items():
        lines.append(
            f"{label:<18}{m.trainable_params:>14,}{m.weights / GB:>10.3g}{m.gradients / GB:>10.3g}"
            f"{m.optimizer / GB:>11.3g}{m.activations / GB:>13.3g}{m.total / GB:>10.3g}"
        )
    lines.append(
        "(GB = 10^9 bytes; optimizer = Adam's two fp32 moments + fp32 master weights in half precision)"
    )
    return "\n".join(lines)


def plot(rows: dict[str, MemoryEstimate], title: str, path: str | Path) -> Path:
    """A stacked bar per method: where the memory goes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = ("weights", "gradients", "optimizer", "activations")
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = [0.0] * len(rows)
    for part in parts:
        values = [getattr(m, part) / GB for m in rows.values()]
        ax.bar(list(rows), values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{total:.3g} GB", ha="center", va="bottom")
    ax.set_ylabel("GB")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plan(
    shape: ModelShape, workload: Workload, methods: Sequence[str], rank: int, targets: Sequence[str]
) -> dict[str, MemoryEstimate]:
    """One estimate per method, labelled as in the table."""
    rows = {}
    for name in methods:
        method = Method(name, rank=rank, targets=tuple(targets), train_head=shape.head != "lm")
        label = "full" if name == "full" else f"{name} r={rank} {','.join(targets)}"
        rows[label] = estimate(shape, workload, method)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loralab.memory", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--size", choices=sorted(PRESETS), help="a Llama 2 shape (default 7b)")
    source.add_argument("--params", type=float, help="any parameter count, e.g. 3e9")
    source.add_argument(
        "--hf-config", help="a Hugging Face config.json (Llama/Mistral/Qwen, GPT-2, BERT styles)"
    )
    source.add_argument("--model", help="a configs/model/ name of this project, e.g. tiny_encoder")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="bf16")
    parser.add_argument("--attention", choices=["fused", "eager"], default="fused")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--targets", default="q,v", help="comma-separated, or all-linear")
    parser.add_argument("--methods", default="full,lora,qlora")
    parser.add_argument("--plot", help="also write a stacked bar chart (PNG) here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    """Print (and return) the table; bad input is one `error:` line and exit status 1."""
    try:
        return run(parse_args(argv))
    except UserError as error:
        raise SystemExit(f"error: {error}") from None


def run(args: argparse.Namespace) -> str:
    if args.hf_config:
        shape = shape_from_hf_config(args.hf_config)
    elif args.model:
        shape = shape_from_model_config(args.model)
    elif args.params:
        shape = shape_for_params(args.params)
    else:
        size = args.size or "7b"
        shape = llama_shape(f"Llama-2-{size}", **PRESETS[size])
    workload = Workload(args.batch, args.seq_len, args.dtype, args.attention)
    targets = [t for t in args.targets.split(",") if t]
    rows = plan(shape, workload, args.methods.split(","), args.rank, targets)
    table = format_table(shape, workload, rows)
    print(table)
    if args.plot:
        print(f"plot: {plot(rows, table.splitlines()[0], args.plot)}")
    return table


if __name__ == "__main__":
    main()

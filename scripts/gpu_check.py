"""One GPU check: SmolLM2 LoRA vs full vs QLoRA (bf16, batch 8 x 512) with and without gradient
checkpointing, loralab vs PEFT on the same model, the memory planner's prediction beside each
measurement, and a short `make llm`-shaped run with exact match. Writes gpu_check.json and
gpu_check.md into --out.

    scripts/gpu_check.sh                   # on a GPU machine: ~5-8 minutes
    scripts/gpu_check.sh --cpu             # the same checks, reduced: a tiny Llama, seconds

--cpu swaps SmolLM2 for a tiny random Llama, bf16 for fp32, 8 x 512 for 2 x 32 and the run for
a few steps, so that the script itself is tested on every `make test`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_llm import build_base, lora_config, peft_twin, training_step  # scripts/ is on the path
from bench_peft import alternate, synchronized
from torch import nn

from loralab.lora import apply_adapter, lora_layers
from loralab.measure.hf_config import shape_from_hf_config
from loralab.measure.planner import Method, Workload, estimate
from loralab.measure.step import train_state_bytes
from loralab.models.hf import enable_gradient_checkpointing

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("lora", "full", "qlora")


def settings(cpu: bool) -> dict[str, Any]:
    """The check's sizes: the GPU check, or its reduced CPU form."""
    if cpu:
        return dict(device="cpu", dtype=torch.float32, batch=2, seq_len=32, steps=3, run_steps=4)
    return dict(device="cuda", dtype=torch.bfloat16, batch=8, seq_len=512, steps=10, run_steps=150)


def base_model(cpu: bool, out: Path) -> nn.Module:
    """SmolLM2 (converted, else random weights of its shape), or a tiny random Llama on CPU
    (written as a hub-style folder with a chat-template tokenizer, which the run reads too)."""
    if not cpu:
        return build_base(random_init=False, device="cuda")[0]
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(ROOT))  # the tests' tiny Llama writer
    from tests.tiny_llm import write_tiny_llama

    folder = write_tiny_llama(out / "tiny_llama", hidden_size=64, intermediate_size=128)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.config.use_cache = False
    return model.train()


def adapted(base: nn.Module, method: str, checkpointing: bool, dtype: torch.dtype) -> nn.Module:
    model = copy.deepcopy(base).to(dtype)
    qlora = {"quant": "nf4", "double_quant": True} if method == "qlora" else {}
    config = {"name": "full"} if method == "full" else {**lora_config(), **qlora}
    apply_adapter(model, config)
    if checkpointing:
        enable_gradient_checkpointing(model)
    return model


def peak_bytes(device: str) -> int | None:
    return torch.cuda.max_memory_allocated() if device == "cuda" else None


def measure(base: nn.Module, method: str, checkpointing: bool, s: dict[str, Any]) -> dict:
    """tokens/s over `steps` AdamW steps after one warm-up, and the peak GPU memory."""
    model = adapted(base, method, checkpointing, s["dtype"]).to(s["device"])
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (s["batch"], s["seq_len"]), device=s["device"])
    step, optimizer = training_step(model, ids)
    if s["device"] == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    step()
    synced = synchronized(step, s["device"])
    started = time.perf_counter()
    for _ in range(s["steps"]):
        synced()
    seconds = (time.perf_counter() - started) / s["steps"]
    row = {
        "method": method,
        "gradient_checkpointing": checkpointing,
        "tokens_per_s": s["batch"] * s["seq_len"] / seconds,
        "step_ms": 1e3 * seconds,
        "peak_memory_bytes": peak_bytes(s["device"]),
        "train_state_bytes": train_state_bytes(model, [optimizer]),
    }
    del model, optimizer, step, synced
    return row


def predicted(base: nn.Module, method: str, s: dict[str, Any]) -> int:
    """The memory planner's total for this method and workload (it does not model
    gradient checkpointing: the rows with it get the same prediction, an upper bound)."""
    with tempfile.TemporaryDirectory() as folder:
        base.config.to_json_file(Path(folder, "config.json"))
        shape = shape_from_hf_config(Path(folder, "config.json"))
    dtype = "bf16" if s["dtype"] == torch.bfloat16 else "fp32"
    workload = Workload(s["batch"], s["seq_len"], dtype, "fused")
    return int(estimate(shape, workload, Method(method, 8, ("q", "v"), train_head=False)).total)


def lora_vs_peft(base: nn.Module, s: dict[str, Any]) -> dict[str, float]:
    """Step times of loralab's and PEFT's LoRA (the same A and B), taking turns."""
    ours = adapted(base, "lora", False, s["dtype"])
    with torch.no_grad():
        for _, layer in lora_layers(ours):
            layer.lora_B.normal_(0.0, 0.02)
    peft = peft_twin(base.to(s["dtype"]), ours)
    ids = torch.randint(3, ours.config.vocab_size, (s["batch"], s["seq_len"]))
    steps = {}
    for name, model in (("loralab", ours), ("peft", peft)):
        step, _ = training_step(model.to(s["device"]), ids.to(s["device"]))
        steps[name] = synchronized(step, s["device"])
    times = alternate(steps, rounds=3, steps=max(1, s["steps"] // 3))
    return {"loralab_step_ms": 1e3 * times["loralab"], "peft_step_ms": 1e3 * times["peft"]}


def llm_run(cpu: bool, s: dict[str, Any], out: Path) -> dict[str, Any]:
    """A short `make llm`-shaped run (LoRA q,v on the bundled instructions), its exact match."""
    run_dir = out / "llm_run"
    overrides = [
        "experiment=llm_lora_vs_full",
        "adapter=lora",
        "adapter.lr=2e-3",
        f"trainer.max_steps={s['run_steps']}",
        f"hydra.run.dir={run_dir}",
        "logger=[]",
        "trainer.enable_progress_bar=false",
        "callbacks.progress_bar=null",
    ]
    if cpu:
        overrides += [
            f"model.pretrained_model_name_or_path={out / 'tiny_llama'}",
            "trainer=cpu",
            "data.n_train=16",
            "data.n_val=4",
            "data.n_test=4",
            "task.val_generations=4",
            "task.max_new_tokens=4",
            "callbacks.source_eval=null",
            "callbacks.model_summary=null",
            "trainer.enable_model_summary=false",
        ]
    else:
        overrides += ["trainer=gpu", "data.n_test=200"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "loralab.train", *overrides], check=True, env=env, cwd=ROOT
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "steps": summary["global_step"],
        "wall_s": time.perf_counter() - started,
        "test/exact_match": summary["metrics"].get("test/exact_match"),
        "val/exact_match": summary["metrics"].get("val/exact_match"),
        "tokens_per_s": summary.get("tokens_per_s"),
    }


def markdown(result: dict[str, Any]) -> str:
    """The measurements as a Markdown table, then PEFT and the run."""
    mib = 2**20
    lines = [
        f"# GPU check ({result['device']}, {result['dtype']}, batch {result['batch']} x "
        f"{result['seq_len']}, commit {result['commit']})",
        "",
        "| method | grad. ckpt | tokens/s | peak GPU MiB | train state MiB | planner MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        peak = f"{r['peak_memory_bytes'] / mib:.0f}" if r["peak_memory_bytes"] else "n/a (CPU)"
        lines.append(
            f"| {r['method']} | {'on' if r['gradient_checkpointing'] else 'off'} | "
            f"{r['tokens_per_s']:.0f} | {peak} | {r['train_state_bytes'] / mib:.1f} | "
            f"{r['planner_bytes'] / mib:.0f} |"
        )
    p, run = result["peft"], result["llm_run"]
    lines += [
        "",
        f"loralab vs PEFT LoRA step: {p['loralab_step_ms']:.1f} ms vs {p['peft_step_ms']:.1f} ms",
        "",
        f"`make llm`-shaped run: {run['steps']} steps in {run['wall_s']:.0f} s, "
        f"test exact match {run['test/exact_match']}",
    ]
    return "\n".join(lines) + "\n"


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="the reduced check, on CPU")
    parser.add_argument("--out", default=str(ROOT / "logs" / "gpu_check"))
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU here; run scripts/gpu_check.sh --cpu for the CPU form")
    s, out = settings(args.cpu), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = base_model(args.cpu, out)
    rows = []
    for method in METHODS:
        for checkpointing in (False, True):
            row = measure(base, method, checkpointing, s)
            rows.append({**row, "planner_bytes": predicted(base, method, s)})
            print(json.dumps(row), flush=True)
    result = {
        "device": torch.cuda.get_device_name() if s["device"] == "cuda" else "cpu",
        "dtype": str(s["dtype"]).removeprefix("torch."),
        "batch": s["batch"],
        "seq_len": s["seq_len"],
        "commit": commit(),
        "rows": rows,
        "peft": lora_vs_peft(base, s),
        "llm_run": llm_run(args.cpu, s, out),
    }
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()

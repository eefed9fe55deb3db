"""LoRA vs full fine-tuning on the default backbone, measured side by side in one process.

Prints ratios (LoRA / full training step time, LoRA / full training memory, merged / base
inference time). Runs alternate between the contenders, so drifts of the machine hit both.

    make bench                          # the default backbone and adapter
    python scripts/bench.py adapter.rank=16 data.batch_size=128
"""

from __future__ import annotations

import copy
import sys

import hydra
import torch
import torch.nn.functional as F
from bench_peft import alternate  # scripts/ is on a script's path
from hydra import compose, initialize_config_dir

from loralab.lora import apply_adapter, merge_lora
from loralab.measure.step import measure_step_memory
from loralab.run.resolvers import config_dir

# contenders take turns: 5 rounds of 10 timed calls each, after 3 untimed calls
ROUNDS, STEPS_PER_ROUND, WARMUP = 5, 10, 3


def build(overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["model.checkpoint=null", *overrides])
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    base = hydra.utils.instantiate(cfg.model)
    return cfg, base, batch


def make_step(model: torch.nn.Module, batch: dict, lr: float):
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=lr,
        fused=True,  # as training
    )
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def loss_of(m: torch.nn.Module) -> torch.Tensor:
        return F.cross_entropy(m(**inputs), batch["labels"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(model).backward()
        optimizer.step()

    return step, loss_of


def main(overrides: list[str]) -> None:
    torch.manual_seed(0)
    cfg, base, batch = build(overrides)
    full = copy.deepcopy(base)
    lora = copy.deepcopy(base)
    report = apply_adapter(lora, cfg.adapter)
    apply_adapter(full, {"name": "full"})

    lora_step, lora_loss = make_step(lora, batch, lr=1e-2)
    full_step, full_loss = make_step(full, batch, lr=1e-3)
    train_times = alternate({"lora": lora_step, "full": full_step}, ROUNDS, STEPS_PER_ROUND, WARMUP)
    lora_mem = measure_step_memory(lora, lora_loss)
    full_mem = measure_step_memory(full, full_loss)

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    merged = copy.deepcopy(lora).eval()
    merge_lora(merged)
    unmerged = copy.deepcopy(lora).eval()
    base.eval()
    with torch.inference_mode():
        infer = alternate(
            {
                "base": lambda: base(**inputs),
                "merged": lambda: merged(**inputs),
                "unmerged": lambda: unmerged(**inputs),
            },
            ROUNDS,
            STEPS_PER_ROUND,
            WARMUP,
        )

    shape = tuple(batch["input_ids"].shape)
    print(f"backbone: {type(base).__name__}, batch {shape}, {report.summary()}")
    print(f"{'measure':<44}{'LoRA':>12}{'full':>12}{'ratio':>8}")
    rows = [
        ("training step time (ms)", 1e3 * train_times["lora"], 1e3 * train_times["full"]),
        (
            "training memory: params+grads+Adam+acts (KiB)",
            lora_mem.total / 1024,
            full_mem.total / 1024,
        ),
        (
            "  of which gradients + Adam state (KiB)",
            (lora_mem.gradients + lora_mem.optimizer_state) / 1024,
            (full_mem.gradients + full_mem.optimizer_state) / 1024,
        ),
    ]
    for name, a, b in rows:
        print(f"{name:<44}{a:>12.2f}{b:>12.2f}{a / b:>8.3f}")
    print(f"{'inference time (ms)':<44}{'merged':>12}{'base':>12}{'ratio':>8}")
    print(
        f"{'  merged LoRA vs base':<44}{1e3 * infer['merged']:>12.3f}{1e3 * infer['base']:>12.3f}"
        f"{infer['merged'] / infer['base']:>8.3f}"
    )
    print(
        f"{'  unmerged LoRA vs base':<44}{1e3 * infer['unmerged']:>12.3f}{1e3 * infer['base']:>12.3f}"
        f"{infer['unmerged'] / infer['base']:>8.3f}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])

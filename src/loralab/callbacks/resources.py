"""Measure what a run costs (step time, throughput, memory) without touching the task."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import psutil
import torch

from loralab.measure.step import train_state_bytes


def _batch_size_and_tokens(batch: Any) -> tuple[int, int]:
    """Samples and real tokens in a batch dict of our data modules (or HF-style batches)."""
    if isinstance(batch, dict) and "input_ids" in batch:
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        tokens = int(mask.sum()) if mask is not None else ids.numel()
        return ids.shape[0], tokens
    first = batch[0] if isinstance(batch, list | tuple) else batch
    return (len(first), 0) if hasattr(first, "__len__") else (0, 0)


class ResourceMonitor(L.Callback):
    """Times every training step and tracks memory; results in `summary()` and the logs.

    The first `warmup_steps` steps are not timed: they pay for allocator and kernel warm-up.
    Peak memory is `torch.cuda.max_memory_allocated` on GPU and the peak resident set size
    (sampled after backward, when gradients and optimizer state are alive) on CPU. The train
    state (weights + gradients + optimizer state, see `train_state_bytes`) is counted at the
    end of the first steps, after their optimizer step, when all three exist.
    """

    def __init__(self, warmup_steps: int = 3) -> None:
        self.warmup_steps = warmup_steps
        self._process = psutil.Process()
        self._t0 = 0.0
        self._steps = 0
        self.step_times: list[float] = []
        self.samples = 0
        self.tokens = 0
        self.peak_rss = 0
        self.train_state = 0

    def _on_gpu(self, trainer: L.Trainer) -> bool:
        return trainer.strategy.root_device.type == "cuda"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._on_gpu(trainer):
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)
        self.peak_rss = self._process.memory_info().rss

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        self._t0 = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:  # noqa: ANN001
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if self._on_gpu(trainer):
            torch.cuda.synchronize(trainer.strategy.root_device)
        elapsed = time.perf_counter() - self._t0
        self._steps += 1
        if self._steps <= self.warmup_steps + 1:  # untimed from here on: the next step's t0
            state = train_state_bytes(pl_module, trainer.optimizers)
            self.train_state = max(self.train_state, state)
        if self._steps <= self.warmup_steps:
            return
        n, tokens = _batch_size_and_tokens(batch)
        self.step_times.append(elapsed)
        self.samples += n
        self.tokens += tokens

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, value in self.summary(trainer).items():
            if value is not None:
                # every rank measures itself; rank 0's numbers stand for the run
                pl_module.log(f"perf/{name}", float(value), rank_zero_only=True)

    def summary(self, trainer: L.Trainer | None = None) -> dict[str, float | None]:
        """Mean step time (ms), throughput of all ranks, this rank's peak memory and train
        state (MiB)."""
        total = sum(self.step_times)
        # data-parallel ranks each process their own batches in the same step time
        ranks = trainer.world_size if trainer is not None else 1
        peak = self.peak_rss
        if trainer is not None and self._on_gpu(trainer):
            peak = torch.cuda.max_memory_allocated(trainer.strategy.root_device)
        return {
            "step_time_ms": 1000 * total / len(self.step_times) if self.step_times else None,
            "samples_per_s": ranks * self.samples / total if total else None,
            "tokens_per_s": ranks * self.tokens / total if total and self.tokens else None,
            "peak_memory_mib": peak / 2**20 if peak else None,
            "train_state_mib": self.train_state / 2**20 if self.train_state else None,
        }

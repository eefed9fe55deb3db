"""Measure a training step's time and tensor memory, the same way for every adapter."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class StepMemory:
    """Bytes alive at the peak of a training step (after backward, before the update)."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer_state + self.activations


def _storage_bytes(tensors: list[Tensor]) -> int:
    """Bytes of distinct storages, so views and shared weights count once."""
    seen: dict[int, int] = {}
    for t in tensors:
        if callable(getattr(t, "to_local", None)):  # an FSDP2 DTensor: this rank's shard
            t = t.to_local()
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _optimizer_state(optimizers: Iterable[torch.optim.Optimizer]) -> list[Tensor]:
    """Every tensor the optimizers keep per parameter (Adam: step, exp_avg, exp_avg_sq)."""
    return [
        v
        for optimizer in optimizers
        for state in optimizer.state.values()
        for v in state.values()
        if torch.is_tensor(v)
    ]


def train_state_bytes(module: nn.Module, optimizers: Iterable[torch.optim.Optimizer]) -> int:
    """Bytes of what training keeps alive besides activations: the module's weights and
    buffers as stored (quantized ones as codes and scales), the gradients and the optimizer
    state. Exact, unlike a process's memory, and the measure in which LoRA saves most.

    parameters() and buffers() list a tied tensor once and, unlike state_dict(), never
    gather sharded (FSDP) weights: each rank counts what it holds.
    """
    params = list(module.parameters())
    return (
        _storage_bytes([*params, *module.buffers()])
        + _storage_bytes([p.grad for p in params if p.grad is not None])
        + _storage_bytes(_optimizer_state(optimizers))
    )


def measure_step_memory(
    model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], lr: float = 1e-3
) -> StepMemory:
    """Run one AdamW step on a copy of `model` and count what it kept alive.

    Activations are the tensors autograd saves for backward (counted when saved); gradients
    and optimizer state are counted after the step, when Adam's moments exist.
    """
    model = copy.deepcopy(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    saved: list[Tensor] = []

    def pack(t: Tensor) -> Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(model)
    params = list(model.parameters())
    # parameters are saved for backward too; they are counted once, as parameters
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    activations = [t for t in saved if t.untyped_storage().data_ptr() not in param_ptrs]
    activation_bytes = _storage_bytes(activations)
    loss.backward()
    optimizer.step()
    # the moments, not the step counters: what the planner's estimate counts
    state = [v for v in _optimizer_state([optimizer]) if v.dim() > 0]
    return StepMemory(
        parameters=_storage_bytes(params),
        gradients=_storage_bytes([p.grad for p in trainable if p.grad is not None]),
        optimizer_state=_storage_bytes(state),
        activations=activation_bytes,
    )


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median seconds of `fn()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]

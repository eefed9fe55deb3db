"""Weights held cast for a block of calls: cast once, reused by every call until they change.

Under `trainer.precision=bf16-mixed` autocast casts each float32 weight to bfloat16 when a
matmul reads it. It keeps the cast of a trainable weight for the rest of its region (one
training step, one validation batch), but casts every frozen weight again at every call: a
LoRA step of SmolLM2 copies all its 135M frozen weights, and a generation copies them once per
new token. `held_casts(model)` swaps each `nn.Linear`'s weight and bias for a bfloat16 copy
while a block runs and puts the originals back after it. The copies are autocast's own casts
(`.to(dtype)`), so every output and gradient is the one autocast gives. A quantized base
(QLoRA) is dequantized once where no gradient is taken, in any precision, instead of once per
batch of an evaluation (its `held_weight`, in the autocast dtype under autocast).

The copies belong to the model (one cache per model object, gone with it) and are reused:

- a frozen weight's copy is kept for the next block, and made again when the weight changed
  in place (its version counter moved: a merge, a loaded checkpoint);
- a trainable weight, and a quantized base's float weight, are held only where no gradient is
  taken (evaluation, generation), where nothing can change them inside the block; the copy is
  dropped at the next block that takes gradients: there autocast casts a trainable weight
  again for that step (the step updates it), and QLoRA keeps its small training memory.

Left as they are: embeddings (autocast does not cast them, tied or not), the base of a variant
whose update reads that weight (DoRA's row norms), and FSDP's sharded weights, which are
FSDP's to gather and swap. The price is a half-precision copy of the frozen weights for as
long as the model lives, where a step held the same copies anyway (saved for its backward).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from loralab.compat import tensor_version
from loralab.lora.quantized_linear import QuantizedLinear

HELD = ("weight", "bias")


def is_sharded(tensor: Tensor) -> bool:
    """A DTensor (FSDP2's parameters, sharded across ranks)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


@dataclass
class Held:
    """One weight's cast: of which tensor, at which version of it, in which dtype."""

    source: Tensor
    version: int
    copy: Tensor

    def fits(self, tensor: Tensor, dtype: torch.dtype) -> bool:
        return (
            self.source is tensor
            and self.version == tensor_version(tensor)
            and self.copy.dtype == dtype
        )


# one cache per model object: deep copies and other models start with none
_CACHES: weakref.WeakKeyDictionary[nn.Module, dict[int, Held]] = weakref.WeakKeyDictionary()
# models inside a block now: a block within it (generation's batches) holds nothing more
_ACTIVE: set[int] = set()


def held_copies(model: nn.Module) -> dict[int, Held]:
    """The model's cache: id of a held weight (or quantized layer) -> its copy. Clearing it
    makes the next block cast (and dequantize) again, as scripts/bench_llm.py does per pass."""
    return _CACHES.setdefault(model, {})


def _reused(
    cache: dict[int, Held],
    kept: dict[int, Held],
    key: int,
    source: Tensor,
    dtype: torch.dtype,
    make: Callable[[], Tensor],
) -> Tensor:
    """The cached copy under `key` while `source` is unchanged and the dtype the same, else
    `make()`; recorded in `kept`. The copy is made outside inference mode (Lightning
    validates in it), so a later training step can still save it for its backward."""
    held = cache.get(key)
    if held is None or not held.fits(source, dtype):
        with torch.inference_mode(False), torch.no_grad():
            held = Held(source, tensor_version(source), make())
    kept[key] = held
    return held.copy


@contextmanager
def held_casts(model: nn.Module) -> Iterator[None]:
    """The model's weights held cast for the block: under autocast every `nn.Linear`'s weight
    and bias in the autocast dtype (frozen ones always, trainable ones where no gradient is
    taken); where no gradient is taken, every quantized base dequantized. Each is cast once
    and reused while it is unchanged."""
    first = next(model.parameters(), None)
    device = first.device.type if first is not None else "cpu"
    autocast = torch.is_autocast_enabled(device)
    grads = torch.is_grad_enabled()
    if id(model) in _ACTIVE or any(map(is_sharded, model.parameters())):
        yield
        return
    if grads and not autocast:  # a float32 step: nothing to hold, and no copy is kept for it
        held_copies(model).clear()
        yield
        return
    dtype = torch.get_autocast_dtype(device) if autocast else None
    # a variant whose update reads W itself (DoRA's row norms) keeps its base as it is
    reads_base = {id(m.base) for m in model.modules() if getattr(m, "update_needs_base", False)}
    cache = held_copies(model)
    kept: dict[int, Held] = {}
    swapped = []
    dequantized = []
    _ACTIVE.add(id(model))
    try:
        for module in model.modules():
            if isinstance(module, QuantizedLinear):
                if not grads and module.held_weight is None and module.dense_weight is None:
                    held_dtype = dtype or module.dtype
                    module.held_weight = _reused(
                        cache, kept, id(module), module.codes, held_dtype,
                        lambda m=module, d=held_dtype: m.dequantize().to(d),
                    )  # fmt: skip
                    dequantized.append(module)
                continue
            if not autocast or not isinstance(module, nn.Linear) or id(module) in reads_base:
                continue
            for name in HELD:
                tensor = getattr(module, name)
                if tensor is None or tensor.dtype == dtype or not tensor.is_floating_point():
                    continue
                if tensor.requires_grad and grads:
                    continue  # a step trains it: autocast casts it once for the step
                copy = _reused(
                    cache, kept, id(tensor), tensor, dtype,
                    lambda t=tensor: nn.Parameter(t.detach().to(dtype), requires_grad=False),
                )  # fmt: skip
                swapped.append((module, name, tensor))
                setattr(module, name, copy)
        # what this block did not hold goes: trainable and dequantized copies at a step,
        # the copies of weights the model no longer has
        cache.clear()
        cache.update(kept)
        yield
    finally:
        for module, name, tensor in reversed(swapped):
            setattr(module, name, tensor)
        for layer in dequantized:
            layer.held_weight = None
        _ACTIVE.discard(id(model))

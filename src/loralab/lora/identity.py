"""The identity of the base an adapter was trained on: a content hash plus the shapes.

An adapter means something only on top of the exact weights it was trained with. Its files
used to name the base by path alone, so a base re-pretrained under the same path made an
old run evaluate silently wrong. A `BaseIdentity` is a fingerprint of every tensor of the
bare backbone (its state dict before any adapter is applied: names, shapes, dtypes and a
sha256 of the bytes), less the modules the adapter trains in full (their values come from
the adapter itself). Runs record it in checkpoints and adapter files; loaders compare.

Hashing reads each byte of the base once (sha256 runs at about 1.5-2 GB/s on one core:
~60 ms for MiniLM's 91 MB, a few seconds for a 7B model) and is done once per process, when
the backbone is built. The fingerprint is taken before the adapter changes anything, so
variants that rewrite the frozen weights (PiSSA's residual, QLoRA's storage) compare the
same base on every machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from loralab.errors import AdapterConfigError

# hex digits kept per tensor: 64 bits tell accidental changes apart; the whole base keeps 256
TENSOR_HASH_CHARS = 16


@dataclass(frozen=True)
class TensorPrint:
    """One tensor's fingerprint."""

    shape: tuple[int, ...]
    dtype: str
    sha256: str


@dataclass(frozen=True)
class BaseIdentity:
    """The fingerprints of a base's tensors, by state-dict name."""

    tensors: Mapping[str, TensorPrint] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """One hash of the whole base: equal digests mean equal tensors, names and shapes."""
        summary = hashlib.sha256()
        for name in sorted(self.tensors):
            t = self.tensors[name]
            summary.update(f"{name}:{t.dtype}:{list(t.shape)}:{t.sha256};".encode())
        return summary.hexdigest()

    def without(self, modules: Iterable[str]) -> BaseIdentity:
        """This identity less the tensors of `modules` (those an adapter trains in full)."""
        prefixes = tuple(f"{m}." for m in modules)
        return BaseIdentity({n: t for n, t in self.tensors.items() if not n.startswith(prefixes)})

    def to_dict(self) -> dict[str, Any]:
        """Plain values: JSON for safetensors headers, loadable with `weights_only=True`."""
        return {
            "digest": self.digest,
            "tensors": {n: [t.dtype, list(t.shape), t.sha256] for n, t in self.tensors.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaseIdentity:
        return cls(
            {
                name: TensorPrint(tuple(shape), dtype, sha)
                for name, (dtype, shape, sha) in data["tensors"].items()
            }
        )


def tensor_sha256(tensor: torch.Tensor) -> str:
    """The sha256 of a tensor's bytes, whatever its dtype (bf16 and quantized ints included)."""
    data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(memoryview(data.numpy())).hexdigest()[:TENSOR_HASH_CHARS]


def base_identity(model: nn.Module, exclude: Iterable[str] = ()) -> BaseIdentity:
    """The identity of a bare backbone's state dict, less the modules in `exclude`."""
    seen: dict[tuple[Any, ...], str] = {}  # tied weights are hashed once
    prints = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if key not in seen:
            seen[key] = tensor_sha256(tensor)
        prints[name] = TensorPrint(tuple(tensor.shape), str(tensor.dtype), seen[key])
    return BaseIdentity(prints).without(exclude)


def base_difference(saved: BaseIdentity, current: BaseIdentity) -> str | None:
    """How `current` differs from `saved`, in words (the first tensor and a count); None if equal."""
    if saved.digest == current.digest:
        return None
    names = sorted(saved.tensors.keys() | current.tensors.keys())
    differing = [n for n in names if saved.tensors.get(n) != current.tensors.get(n)]
    first = differing[0]
    was, now = saved.tensors.get(first), current.tensors.get(first)
    if now is None:
        what = f"tensor {first!r} of the trained-on base is missing"
    elif was is None:
        what = f"the base has a tensor {first!r} the trained-on base lacked"
    elif was.shape != now.shape or was.dtype != now.dtype:
        what = (
            f"tensor {first!r} is {now.dtype} {list(now.shape)}, was {was.dtype} {list(was.shape)}"
        )
    else:
        what = f"tensor {first!r} has other values (same shape {list(now.shape)})"
    return f"{what}; {len(differing)} of {len(names)} tensors differ"


def check_same_base(
    saved: Mapping[str, Any] | None,
    current: BaseIdentity | None,
    source: str,
    override: str = "allow_other_base=True",
) -> None:
    """Refuse, in one sentence, to put an adapter from `source` onto another base.

    Nothing is compared when either side has no identity (full fine-tuning; files written
    before identities were recorded).
    """
    if not saved or current is None:
        return
    difference = base_difference(BaseIdentity.from_dict(saved), current)
    if difference:
        raise AdapterConfigError(
            f"{source} was trained on another base than the one it is loaded onto "
            f"({difference}); load it onto the base it was trained on, or pass {override} "
            "if you know the two bases are interchangeable."
        )

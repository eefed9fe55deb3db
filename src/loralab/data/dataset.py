"""A map-style dataset over equally long tensors that yields the batch dicts tasks expect."""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset


class TensorDictDataset(Dataset):
    """Row i of every tensor, as a dict; the default collate stacks them into a batch dict."""

    def __init__(self, **tensors: Tensor) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"all tensors need the same first dimension, got {sorted(lengths)}")
        self.tensors = tensors
        self.length = lengths.pop()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}

"""`QuantizedBase`: a frozen base layer stored in a compressed form, as generic LoRA code sees it.

QLoRA's `QuantizedLinear` is one. The layer's merge and unmerge, the parameter counts, the
layer types, the fold and the PEFT export ask for these methods and never for a concrete
class, so another storage format is one new subclass. A merge never requantizes: the merged
weight is held in full precision beside the stored one (`hold_merged`), and one warning
says what that costs (`warn_merged_in_float`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import Tensor, nn

log = logging.getLogger("loralab.lora")


class QuantizedBase(nn.Module):
    """A frozen layer whose weight is stored compressed; subclasses say how it is stored."""

    fmt: str  # the storage format, named in logs (nf4, int8)
    layer_type: str  # the name of the registered layer type it stands in for (Linear, Conv1D)
    shape: torch.Size  # of the weight it stands for, as out x in

    def __init__(self, fmt: str, layer_type: str) -> None:
        super().__init__()
        self.fmt, self.layer_type = fmt, layer_type
        # a merged adapter needs a full-precision weight; the codes stay, so unmerge is exact
        self.register_buffer("dense_weight", None, persistent=False)
        self.warned_about_merging = False

    def dequantize(self) -> Tensor:
        """The weight the stored form stands for (not any merged update), in the layer's layout."""
        raise NotImplementedError

    def stored_tensors(self) -> list[Tensor]:
        """The tensors that hold the stored weight (codes, scales), the bias not included."""
        raise NotImplementedError

    def stored_bytes(self) -> int:
        """Bytes the weight takes as stored, padding included (the bias is not)."""
        raise NotImplementedError

    def requantization_error(self) -> float:
        """max |W - stored(W)| of the merged weight held in float: what storing it would lose."""
        raise NotImplementedError

    @torch.no_grad()
    def hold_merged(self, weight: Tensor) -> None:
        """Keep a merged weight in full precision instead of requantizing it.

        Requantizing W + update would round it to the format's grid again and lose part of
        the update without a word; the merged layer therefore costs full-precision memory,
        which `warn_merged_in_float` says.
        """
        self.dense_weight = weight

    def release_merged(self) -> None:
        """Back to the stored weight, which the merge never changed."""
        self.dense_weight = None


def warn_merged_in_float(layers: Iterable[nn.Module]) -> None:
    """One warning for the quantized layers now holding a merged weight in float.

    Each layer is told of once: a merge check merges and unmerges again and again.
    """
    held = [
        m
        for m in layers
        if isinstance(m, QuantizedBase)
        and m.dense_weight is not None
        and not m.warned_about_merging
    ]
    if not held:
        return
    dense = sum(m.dense_weight.numel() * m.dense_weight.element_size() for m in held)
    formats = "/".join(sorted({m.fmt for m in held}))
    log.warning(
        "merging into %d layers stored as %s: their weights are dequantized and the merged "
        "results kept in float (%d bytes instead of %d); requantizing them to %s would "
        "change them by up to %.3g (max abs)",
        len(held),
        formats,
        dense,
        sum(m.stored_bytes() for m in held),
        formats,
        max(m.requantization_error() for m in held),
    )
    for m in held:
        m.warned_about_merging = True

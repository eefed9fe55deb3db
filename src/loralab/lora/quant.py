"""Storing a frozen weight in fewer bits: int8 per output row and 4-bit NormalFloat (NF4).

QLoRA (Dettmers et al., 2023) keeps the frozen base in 4 bits and trains LoRA in full
precision on top. Both formats here are *absmax* formats: a group of weights is divided by
its largest magnitude, so every value lands in [-1, 1], and only the rounded value (the
code) plus one float per group (the scale) are stored.

  * int8: one scale per output row; w ~ code * absmax_row / 127, code in [-127, 127].
    Rounding to the nearest code errs by at most half a step: |w - w_hat| <= absmax_row / 254.
  * NF4: one scale per block of 64 weights; w ~ NF4[code] * absmax_block, code in 0..15,
    two codes per byte. The 16 levels are quantiles of a normal distribution (pretrained
    weights are roughly normal), so they are dense near 0 where most weights are. Rounding
    to the nearest level errs by at most half the widest gap between adjacent levels
    times the block's absmax: |w - w_hat| <= NF4_MAX_HALF_GAP * absmax_block.
  * double quantization: the float32 scales are themselves stored as int8 codes (blocks
    of 256, minus their mean), saving ~3.5 of the 4 bytes per scale. The weight bound then
    grows by the scale's own error times |level| <= 1 (NF4) or 127 (int8).

All of this is plain torch and runs on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FORMATS = ("int8", "nf4")
NF4_BLOCK_SIZE = 64
SCALE_BLOCK_SIZE = 256
INT8_MAX = 127


def nf4_levels() -> Tensor:
    """The 16 NF4 levels, computed from their definition rather than copied as a table.

    Positive side: 8 quantiles of N(0, 1) evenly spaced in probability from 0.5 up to
    `offset`; negative side: 7 such quantiles; plus an exact zero. 8 + 7 + 1 = 16 codes,
    and zero is representable (padding and pruned weights stay exactly 0). `offset` sits
    halfway between the 1 - 1/(2*15) and 1 - 1/(2*16) quantiles, so the extreme level is
    not infinity; dividing by the largest level maps everything into [-1, 1].
    """
    offset = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))
    normal_quantile = torch.special.ndtri
    positive = normal_quantile(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal_quantile(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values
    return (levels / levels.abs().max()).float()


NF4_LEVELS = nf4_levels()
NF4_MAX_HALF_GAP = float((NF4_LEVELS[1:] - NF4_LEVELS[:-1]).max() / 2)
# the two levels a packed byte stands for, one row per byte value: dequantizing looks up
# every byte once (a gather of pairs) instead of unpacking two codes and gathering each
NF4_BYTE_LEVELS = torch.stack([NF4_LEVELS.repeat_interleave(16), NF4_LEVELS.repeat(16)], dim=-1)


@dataclass
class QuantizedWeight:
    """A weight as stored: codes, scales (float32, or int8 codes under double quantization)
    and what it takes to rebuild it. Every tensor here counts towards its stored bytes."""

    fmt: str
    shape: torch.Size
    codes: Tensor
    scales: Tensor
    # double quantization only: per-block float32 absmax and the mean of the scales
    scale_absmax: Tensor | None = None
    scale_mean: Tensor | None = None

    def tensors(self) -> dict[str, Tensor]:
        found = {"codes": self.codes, "scales": self.scales}
        if self.scale_absmax is not None:
            found.update(scale_absmax=self.scale_absmax, scale_mean=self.scale_mean)
        return found

    def stored_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


def quantize(
    weight: Tensor, fmt: str, double_quant: bool = False, block_size: int = NF4_BLOCK_SIZE
) -> QuantizedWeight:
    """Quantize a 2-d weight (out x in) to `fmt`; the original is not kept."""
    weight = weight.detach().float()
    if fmt == "int8":
        codes, scales = quantize_int8_rows(weight)
    elif fmt == "nf4":
        codes, scales = quantize_nf4(weight, block_size)
    else:
        raise ValueError(f"unknown quantization format {fmt!r}; use one of {FORMATS}")
    q = QuantizedWeight(fmt, weight.shape, codes, scales)
    if double_quant:
        q.scales, q.scale_absmax, q.scale_mean = quantize_scales(scales)
    return q


def dequantize(q: QuantizedWeight, dtype: torch.dtype = torch.float32) -> Tensor:
    """The weight the codes stand for, shaped and typed like the original."""
    scales = q.scales
    if q.scale_absmax is not None:
        scales = dequantize_scales(q.scales, q.scale_absmax, q.scale_mean)
    if q.fmt == "int8":
        weight = dequantize_int8_rows(q.codes, scales)
    else:
        weight = dequantize_nf4(q.codes, scales, q.shape)
    return weight.to(dtype)


def absmax_scale(groups: Tensor) -> Tensor:
    """Largest magnitude per row of `groups`: what maps each group into [-1, 1]."""
    return groups.abs().amax(dim=-1)


def safe_divisor(scale: Tensor) -> Tensor:
    # an all-zero group has scale 0; its codes come out 0 either way
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_int8_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """int8 codes (out x in) and one float32 absmax per output row."""
    absmax = absmax_scale(weight)
    step = safe_divisor(absmax / INT8_MAX)
    codes = torch.round(weight / step[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes, absmax


def dequantize_int8_rows(codes: Tensor, absmax: Tensor) -> Tensor:
    return codes.float() * (absmax / INT8_MAX)[:, None]


def quantize_nf4(weight: Tensor, block_size: int = NF4_BLOCK_SIZE) -> tuple[Tensor, Tensor]:
    """Packed NF4 codes (two per byte) and one float32 absmax per block of `block_size`."""
    blocks = as_blocks(weight.flatten(), block_size)
    absmax = absmax_scale(blocks)
    normalized = blocks / safe_divisor(absmax)[:, None]
    # nearest level: the levels are sorted, so count how many midpoints lie below
    levels = NF4_LEVELS.to(weight.device)
    midpoints = (levels[1:] + levels[:-1]) / 2
    codes = torch.bucketize(normalized, midpoints).to(torch.uint8).flatten()
    return codes[0::2] << 4 | codes[1::2], absmax


def dequantize_nf4(packed: Tensor, absmax: Tensor, shape: torch.Size) -> Tensor:
    pairs = NF4_BYTE_LEVELS.to(packed.device).index_select(0, packed.int())
    blocks = pairs.view(len(absmax), -1).mul_(absmax[:, None])
    return blocks.flatten()[: shape.numel()].view(shape)


def as_blocks(values: Tensor, block_size: int) -> Tensor:
    """A flat tensor as rows of `block_size`, zero-padded at the end (padding counts as stored)."""
    if block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be an even number >= 2, got {block_size}")
    padding = -values.numel() % block_size
    return torch.cat([values, values.new_zeros(padding)]).view(-1, block_size)


def quantize_scales(scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Double quantization: int8 codes of the centred scales, blocks of SCALE_BLOCK_SIZE."""
    mean = scales.mean()
    blocks = as_blocks(scales - mean, SCALE_BLOCK_SIZE)
    absmax = absmax_scale(blocks)
    step = safe_divisor(absmax / INT8_MAX)
    codes = torch.round(blocks / step[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return codes.flatten()[: scales.numel()], absmax, mean


def dequantize_scales(codes: Tensor, absmax: Tensor, mean: Tensor) -> Tensor:
    blocks = as_blocks(codes.float(), SCALE_BLOCK_SIZE) * (absmax / INT8_MAX)[:, None]
    return blocks.flatten()[: codes.numel()] + mean

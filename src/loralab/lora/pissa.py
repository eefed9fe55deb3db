"""PiSSA initialisation: the adapter starts as the principal part of the weight it adapts.

PiSSA (Meng et al., 2024) splits a pretrained weight by its singular value decomposition,
W = U S V^T, into the top-r part U_r S_r V_r^T and the residual W_res = W - U_r S_r V_r^T.
The adapter takes the top-r part and the frozen base keeps the residual:

    B = U_r sqrt(S_r / scaling),   A = sqrt(S_r / scaling) V_r^T,   so  scaling * B @ A = U_r S_r V_r^T

The wrapped layer still computes W x at init, but the directions that matter most train,
rather than a random A with B = 0, which the paper finds converges faster.

Reloading a PiSSA adapter: the residual is a function of the pretrained W alone (the
product U_r S_r V_r^T does not depend on the signs the SVD picks), so rebuilding the model
from the same base checkpoint with `init: pissa` recomputes the same residual, and the
saved A and B then replace the initial ones. An adapter file therefore never has to
carry the (full-size) residual; its metadata records `init: pissa` so a loader knows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from loralab.lora.errors import AdapterConfigError


def check_pissa_rank(shape: torch.Size, rank: int, layer: str = "a layer") -> None:
    """PiSSA needs `rank` singular directions, and a weight has only min(out, in)."""
    if rank > min(shape):
        raise AdapterConfigError(
            f"adapter.rank={rank} exceeds the smallest side of {layer}'s {tuple(shape)} weight, "
            f"so PiSSA has no {rank} singular directions to take; lower adapter.rank or use "
            "adapter.init=kaiming."
        )


@torch.no_grad()
def pissa_factors(weight: Tensor, rank: int, scaling: float) -> tuple[Tensor, Tensor]:
    """A (rank x in) and B (out x rank) with scaling * B @ A = the top-`rank` SVD part of W."""
    check_pissa_rank(weight.shape, rank)
    # float64 SVD: the residual must cancel the top part to well below float32 precision
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    root = (s[:rank] / scaling).sqrt()
    lora_a = root[:, None] * vh[:rank]
    lora_b = u[:, :rank] * root[None, :]
    return lora_a.to(weight.dtype), lora_b.to(weight.dtype)


def pissa_as_plain_lora(
    lora_a: Tensor, lora_b: Tensor, initial_a: Tensor, initial_b: Tensor
) -> tuple[Tensor, Tensor]:
    """A trained PiSSA adapter restated as a rank-2r LoRA on the *original* weight.

    W_res + s B A = W - s B0 A0 + s B A = W + s [B, -B0] [A; A0], with the same scaling s:
    any LoRA loader (PEFT included) can apply it to the untouched pretrained weight.
    """
    return torch.cat([lora_a, initial_a], dim=0), torch.cat([lora_b, -initial_b], dim=1)

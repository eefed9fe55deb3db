"""PiSSA: the adapter starts as the principal part of the weight it adapts (`adapter.init=pissa`).

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

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer, alpha_for
from loralab.lora.variants.registry import Variant, register_variant


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


@torch.no_grad()
def init_from_principal_components(layer: LoRALayer) -> None:
    """B @ A takes W's top-r singular part, W keeps the rest: the layer's outputs do not change.

    The SVD is of W as out x in (`rows`: GPT-2's Conv1D stores it transposed), so A and B
    come out in the shapes LoRA uses; the top part is taken out of W in W's own layout.
    """
    weight = layer.base.weight
    lora_a, lora_b = pissa_factors(layer.layer_type.rows(weight), layer.rank, layer.scaling)
    layer.lora_A.copy_(lora_a)
    layer.lora_B.copy_(lora_b)
    weight.sub_(layer.delta_weight().to(weight.dtype))
    # kept (not saved) so an export can state the adapter relative to the original W
    layer.register_buffer("initial_lora_A", lora_a.clone(), persistent=False)
    layer.register_buffer("initial_lora_B", lora_b.clone(), persistent=False)


class PiSSA(Variant):
    name = "pissa"
    key, values = "init", ("pissa",)
    layer_types = ("Linear", "Conv1D")  # an SVD of a 2-D weight, as PEFT supports it
    changes_base = True  # the base keeps only the residual
    update_needs_base = True  # the initial B @ A is W's top singular part
    order = 60

    def check_target(self, name: str, module: nn.Module, adapter: Mapping[str, Any]) -> None:
        check_pissa_rank(module.weight.shape, adapter.get("rank"), name)

    def prepare_layer(self, layer: LoRALayer, adapter: Mapping[str, Any]) -> None:
        init_from_principal_components(layer)

    def tag(self, method: str, adapter: Mapping[str, Any]) -> str:
        return method + "-pissa"

    def peft_fields(self, layer: LoRALayer) -> dict[str, Any]:
        # exported as a rank-2r LoRA on the original weight, with the same scaling
        rank = 2 * layer.rank
        alpha = alpha_for(layer.scaling, rank, layer.scaling_rule)
        return {"r": rank, "lora_alpha": alpha, "init_lora_weights": True}

    def peft_tensors(self, layer: LoRALayer, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        names = layer.layer_type.peft_names
        lora_a, lora_b = pissa_as_plain_lora(
            layer.lora_A.detach(),
            layer.lora_B.detach(),
            layer.initial_lora_A,
            layer.initial_lora_B,
        )
        return {**tensors, names["lora_A"]: lora_a, names["lora_B"]: lora_b}


PISSA = register_variant(PiSSA())

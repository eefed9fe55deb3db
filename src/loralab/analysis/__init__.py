"""Analyses of trained runs: how low-rank are the weight updates, and do adapters agree?"""

from loralab.analysis.spectrum import (
    UpdateRank,
    analyse_update,
    energy_rank,
    similarity_grid,
    singular_values,
    subspace_similarity,
    top_input_directions,
)
from loralab.analysis.updates import (
    adapter_scaling,
    adapter_update,
    full_finetuning_updates,
    linear_weights,
    lora_updates,
    projection_of,
)

__all__ = [
    "UpdateRank",
    "adapter_scaling",
    "adapter_update",
    "analyse_update",
    "energy_rank",
    "full_finetuning_updates",
    "linear_weights",
    "lora_updates",
    "projection_of",
    "similarity_grid",
    "singular_values",
    "subspace_similarity",
    "top_input_directions",
]

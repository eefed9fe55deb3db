"""The LoRA core: a low-rank adapter layer, its injection into a model, and its files.

Read in this order: `layer.py` (the math), `targets.py` (which layers), `inject.py` (what
trains), `params.py` (what it costs), `state.py` (what is saved).
"""

from loralab.lora.errors import AdapterConfigError
from loralab.lora.inject import (
    AdapterReport,
    apply_adapter,
    lora_layers,
    max_merge_diff,
    merge_lora,
    unmerge_lora,
)
from loralab.lora.layer import LoRALinear
from loralab.lora.params import (
    ParamCount,
    count_parameters,
    format_parameter_table,
    parameter_table,
)
from loralab.lora.state import (
    adapter_state_dict,
    load_adapter,
    read_adapter_metadata,
    save_adapter,
)
from loralab.lora.targets import find_target_modules, match_any

__all__ = [
    "AdapterConfigError",
    "AdapterReport",
    "LoRALinear",
    "ParamCount",
    "adapter_state_dict",
    "apply_adapter",
    "count_parameters",
    "find_target_modules",
    "format_parameter_table",
    "load_adapter",
    "lora_layers",
    "match_any",
    "max_merge_diff",
    "merge_lora",
    "parameter_table",
    "read_adapter_metadata",
    "save_adapter",
    "unmerge_lora",
]

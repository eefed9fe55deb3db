"""The LoRA core: a low-rank adapter layer, its injection into a model, and its files.

Read in this order: `layer.py` (the math), `targets.py` (which layers), `inject.py` (what
trains), `params.py` (what it costs), `state.py` (what is saved). Then the variants and the
adapter's life after training: `dora.py`, `pissa.py`, `quant.py` + `quantized_linear.py`
(QLoRA), `fold.py` (merge for good), `multi.py` (several adapters on one base) and
`peft_format.py` (Hugging Face PEFT folders).
"""

from loralab.lora.dora import DoRALinear
from loralab.lora.errors import AdapterConfigError
from loralab.lora.fold import merge_and_unwrap
from loralab.lora.inject import (
    AdapterReport,
    apply_adapter,
    lora_layers,
    max_merge_diff,
    merge_lora,
    unmerge_lora,
)
from loralab.lora.layer import LoRALinear, lora_scaling
from loralab.lora.multi import MultiAdapterModel
from loralab.lora.params import (
    ParamCount,
    base_weight_bytes,
    count_parameters,
    format_parameter_table,
    parameter_table,
)
from loralab.lora.peft_format import adapter_config_from_peft, export_peft, import_peft
from loralab.lora.quantized_linear import QuantizedLinear, quantize_frozen_linears
from loralab.lora.state import (
    adapter_state_dict,
    load_adapter,
    load_adapter_tensors,
    read_adapter_metadata,
    save_adapter,
)
from loralab.lora.targets import find_target_modules, match_any

__all__ = [
    "AdapterConfigError",
    "AdapterReport",
    "DoRALinear",
    "LoRALinear",
    "MultiAdapterModel",
    "ParamCount",
    "QuantizedLinear",
    "adapter_config_from_peft",
    "adapter_state_dict",
    "apply_adapter",
    "base_weight_bytes",
    "count_parameters",
    "export_peft",
    "find_target_modules",
    "format_parameter_table",
    "import_peft",
    "load_adapter",
    "load_adapter_tensors",
    "lora_layers",
    "lora_scaling",
    "match_any",
    "max_merge_diff",
    "merge_and_unwrap",
    "merge_lora",
    "parameter_table",
    "quantize_frozen_linears",
    "read_adapter_metadata",
    "save_adapter",
    "unmerge_lora",
]

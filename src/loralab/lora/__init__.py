"""The LoRA core: a low-rank adapter layer, its injection into a model, and its files.

Read in this order: `layer.py` (the math), `layer_types.py` (which base layers, and how the
update attaches to each), `targets.py` (which layers), `inject.py` (what trains), `params.py`
(what it costs), `state.py` (what is saved) and `identity.py` (which base it was saved for).
Then the variants, one registry for all of them
(`variants/`: rsLoRA, LoRA+, DoRA, PiSSA, LoRA-FA, QLoRA with `quant.py` +
`quantized_linear.py`, a `QuantizedBase` of `quantized_base.py`),
and the adapter's life after training: `fold.py` (merge for good), `multi.py` (several
adapters on one base), `peft_format.py` and `peft_config.py` (Hugging Face PEFT folders).

This package imports nothing of loralab but the leaf modules `loralab.errors` and `loralab.io`.
"""

from loralab.errors import AdapterConfigError
from loralab.lora.fold import merge_and_unwrap
from loralab.lora.identity import BaseIdentity, base_identity
from loralab.lora.inject import (
    AdapterReport,
    apply_adapter,
    lora_layers,
    merge_lora,
    replace_module,
    unmerge_lora,
)
from loralab.lora.layer import LoRALayer, lora_scaling
from loralab.lora.layer_types import LayerType, layer_type_of, register_layer_type
from loralab.lora.multi import MultiAdapterModel
from loralab.lora.params import (
    ParamCount,
    base_weight_bytes,
    count_parameters,
    format_parameter_table,
    parameter_table,
)
from loralab.lora.peft_config import adapter_config_from_peft
from loralab.lora.peft_format import export_peft, import_peft
from loralab.lora.quantized_base import QuantizedBase
from loralab.lora.quantized_linear import QuantizedLinear
from loralab.lora.state import (
    adapter_state_dict,
    load_adapter,
    load_adapter_tensors,
    read_adapter_metadata,
    save_adapter,
)
from loralab.lora.targets import find_target_modules, match_any
from loralab.lora.variants import DoRALayer, Variant, build_layer, register_variant
from loralab.lora.variants.qlora import quantize_frozen_linears

__all__ = [
    "AdapterConfigError",
    "AdapterReport",
    "BaseIdentity",
    "DoRALayer",
    "LayerType",
    "LoRALayer",
    "MultiAdapterModel",
    "ParamCount",
    "QuantizedBase",
    "QuantizedLinear",
    "Variant",
    "adapter_config_from_peft",
    "adapter_state_dict",
    "apply_adapter",
    "base_identity",
    "base_weight_bytes",
    "build_layer",
    "count_parameters",
    "export_peft",
    "find_target_modules",
    "format_parameter_table",
    "import_peft",
    "layer_type_of",
    "load_adapter",
    "load_adapter_tensors",
    "lora_layers",
    "lora_scaling",
    "match_any",
    "merge_and_unwrap",
    "merge_lora",
    "parameter_table",
    "quantize_frozen_linears",
    "read_adapter_metadata",
    "register_layer_type",
    "register_variant",
    "replace_module",
    "save_adapter",
    "unmerge_lora",
]

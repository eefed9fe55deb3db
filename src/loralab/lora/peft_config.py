"""PEFT's `adapter_config.json` and loralab's `adapter` config, both ways.

Exporting writes the fields PEFT reads (`r`, `lora_alpha`, `target_modules`, `use_rslora`,
`use_dora`, `fan_in_fan_out`, `modules_to_save`, `task_type`, `base_model_name_or_path`,
...). Importing maps them back and refuses, in one sentence naming the field, every PEFT
option that would make loralab compute something else than PEFT does; an option this module
does not know is refused as well when it is set, so a newer PEFT can't be misread silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer
from loralab.lora.variants import VARIANTS, variants_of

# the modules PEFT trains in full for task_type=SEQ_CLS: whichever of them a model has
SEQ_CLS_HEADS = ("classifier", "score")
# transformers' class-name endings -> PEFT's task_type, which AutoPeftModelFor<Task> checks
TASK_TYPES = {
    "ForSequenceClassification": "SEQ_CLS",
    "ForCausalLM": "CAUSAL_LM",
    "LMHeadModel": "CAUSAL_LM",
    "ForTokenClassification": "TOKEN_CLS",
    "ForQuestionAnswering": "QUESTION_ANS",
}
# PEFT inits that rewrite the base weights; their adapters do not apply to a plain base
BASE_CHANGING_INITS = ("pissa", "olora", "corda", "eva", "loftq")
# fields the import reads, or that change nothing loralab computes (whatever their value):
# fan_in_fan_out in particular is PEFT's per-layer-type flag, which the layer types decide
UNDERSTOOD = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "r",
    "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "use_rslora", "use_dora",
    "init_lora_weights", "modules_to_save", "fan_in_fan_out", "peft_version", "auto_mapping",
    "megatron_core", "qalora_group_size",
}  # fmt: skip
# field -> why loralab cannot reproduce it and what to do instead, when it is set
REFUSED = {
    "rank_pattern": (
        "gives some layers another rank, and a loralab adapter has one adapter.rank for every "
        "layer; save the adapter with a single r (rank_pattern={})"
    ),
    "alpha_pattern": (
        "gives some layers another lora_alpha, and a loralab adapter has one adapter.alpha for "
        "every layer; save the adapter with a single lora_alpha (alpha_pattern={})"
    ),
    "bias": (
        "trains the base layers' biases as well, which loralab's adapters leave frozen; save "
        "the adapter with bias='none'"
    ),
    "lora_bias": (
        "adds a trainable bias to every lora_B, which loralab's LoRA layers do not have; save "
        "the adapter with lora_bias=False"
    ),
    "trainable_token_indices": (
        "trains single rows of an embedding (PEFT's trainable tokens), for which loralab has "
        "no layer; save the adapter without trainable_token_indices, or adapt the embedding "
        "with LoRA instead (its name in target_modules)"
    ),
    "layers_to_transform": (
        "restricts LoRA to some layer indices; list the exact module names in target_modules "
        "instead (loralab matches names, suffixes and regexes)"
    ),
    "layers_pattern": (
        "restricts LoRA to some layer indices; list the exact module names in target_modules "
        "instead (loralab matches names, suffixes and regexes)"
    ),
    "target_parameters": (
        "adapts raw parameters (such as MoE experts) rather than modules, which loralab cannot; "
        "save the adapter with target_modules only"
    ),
}


def is_set(field: str, value: Any) -> bool:
    """Whether a PEFT field holds anything but its default."""
    if field == "bias":
        return value != "none"
    return value not in (None, False, "") and value != {} and value != []


def refuse_unsupported(peft: Mapping[str, Any]) -> None:
    """Fail naming the first field loralab cannot reproduce, with what to do instead."""
    if peft.get("peft_type") != "LORA":
        raise AdapterConfigError(
            f"peft_type is {peft.get('peft_type')!r}; only LoRA adapters (peft_type LORA) "
            "can be imported."
        )
    init = peft.get("init_lora_weights", True)
    if isinstance(init, str) and init.startswith(BASE_CHANGING_INITS):
        raise AdapterConfigError(
            f"the PEFT config's init_lora_weights={init!r} rewrote the base weights it was "
            "trained on, so the adapter does not apply to the plain base; convert it to plain "
            "LoRA first (PEFT: save_pretrained(..., path_initial_model_for_weight_conversion=...))."
        )
    for field, value in peft.items():
        if field in UNDERSTOOD or field == "init_lora_weights" or not is_set(field, value):
            continue
        why = REFUSED.get(field)
        if why is None:
            why = (
                "an option loralab's import does not reproduce; save the adapter with "
                f"{field} at its default"
            )
        raise AdapterConfigError(f"the PEFT config sets {field}={value!r}, which {why}.")


def adapter_config_from_peft(peft: Mapping[str, Any]) -> dict[str, Any]:
    """Our `adapter` config for a PEFT LoRA config; refuses what we cannot reproduce."""
    refuse_unsupported(peft)
    init = peft.get("init_lora_weights", True)
    # a string is a regex PEFT full-matches; a list holds names or name suffixes, like ours
    targets = peft.get("target_modules")
    if isinstance(targets, str) and targets != "all-linear":
        targets = f"re:{targets}"
    elif targets is not None:
        targets = sorted(targets)  # PEFT keeps a set: its saved order is the hash order
    exclude = peft.get("exclude_modules") or []
    adapter = {
        "name": "lora",
        "rank": int(peft["r"]),
        "alpha": peft["lora_alpha"],
        "dropout": float(peft.get("lora_dropout", 0.0)),
        "scaling": "standard",
        "init": "gaussian" if init == "gaussian" else "kaiming",
        "targets": targets,
        "exclude": f"re:{exclude}" if isinstance(exclude, str) else list(exclude),
        "trainable": list(peft.get("modules_to_save") or []),
    }
    for variant in VARIANTS:
        adapter.update(variant.adapter_from_peft(peft))
    return adapter


def task_type_of(model: nn.Module) -> str | None:
    """PEFT's task_type for a transformers model, from its class (None: no such task)."""
    name = type(model).__name__
    return next((task for end, task in TASK_TYPES.items() if name.endswith(end)), None)


def auto_mapping_of(model: nn.Module) -> dict[str, str] | None:
    """What AutoPeftModel imports for a transformers model without a task_type (None: not one)."""
    module = type(model).__module__
    if not module.startswith("transformers.") or not hasattr(model, "config"):
        return None
    return {"base_model_class": type(model).__name__, "parent_library": module}


def peft_config_of(
    layers: list[tuple[str, LoRALayer]],
    modules_to_save: list[str],
    base_model_name_or_path: str | None,
    task_type: str | None,
    auto_mapping: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The `adapter_config.json` of layers built with one adapter config."""
    first = layers[0][1]
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        # read by AutoPeftModel only where task_type is None
        "auto_mapping": auto_mapping if task_type is None else None,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "inference_mode": True,
        "r": first.rank,
        "lora_alpha": first.alpha,
        "lora_dropout": first.dropout_rate,
        "target_modules": [name for name, _ in layers],
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": "gaussian" if first.init == "gaussian" else True,
        "modules_to_save": modules_to_save or None,
        "bias": "none",
        # PEFT's flag for weights stored in x out; it sets it itself for GPT-2's Conv1D
        "fan_in_fan_out": any(layer.layer_type.fan_in_fan_out for _, layer in layers),
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    for variant in variants_of(first):
        config.update(variant.peft_fields(first))
    return config

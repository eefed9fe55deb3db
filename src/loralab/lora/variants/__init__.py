"""The LoRA variants, one registry for all of them (see `registry.py`).

The built-in variants are registered below, in the order their run-name tags apply
(`rsdora-pissa`, `qlora-nf4`): `lora`, `rslora`, `loraplus` (plain.py), `dora` (dora.py),
`qlora` (qlora.py), `pissa` (pissa.py). A new variant is a `Variant` subclass registered with
`register_variant`; docs/extending.md walks through one.
"""

from loralab.lora.variants.dora import DORA, DoRALayer
from loralab.lora.variants.pissa import PISSA
from loralab.lora.variants.plain import LORAPLUS, PLAIN, RSLORA
from loralab.lora.variants.qlora import QLORA
from loralab.lora.variants.registry import (
    ANY,
    FULL,
    VARIANTS,
    Variant,
    active_variants,
    build_layer,
    check_supported,
    layer_settings,
    method_name,
    method_names,
    register_variant,
    unregister_variant,
    variant_keys,
    variant_named,
    variants_of,
)

for _variant in (PLAIN, RSLORA, LORAPLUS, DORA, QLORA, PISSA):
    register_variant(_variant)

__all__ = [
    "ANY",
    "DORA",
    "FULL",
    "LORAPLUS",
    "PISSA",
    "PLAIN",
    "QLORA",
    "RSLORA",
    "VARIANTS",
    "DoRALayer",
    "Variant",
    "active_variants",
    "build_layer",
    "check_supported",
    "layer_settings",
    "method_name",
    "method_names",
    "register_variant",
    "unregister_variant",
    "variant_keys",
    "variant_named",
    "variants_of",
]

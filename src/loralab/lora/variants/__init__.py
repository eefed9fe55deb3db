"""The LoRA variants, one registry for all of them (see `registry.py`).

Each module of this package registers its own variants when it is imported, and importing
the package imports every one of them, so a new built-in variant is one new file here. They
apply in their declared `order` (run-name tags: `rsdora-pissa`, `qlora-nf4`): `lora`,
`rslora`, `loraplus` (plain.py), `dora` (dora.py), `qlora` (qlora.py), `pissa` (pissa.py),
then the rest (e.g. `lora_fa`, lora_fa.py). A variant from outside the library is a `Variant`
subclass registered with `register_variant`; docs/extending.md walks through one.
"""

import importlib
import pkgutil

from loralab.lora.variants.dora import DORA, DoRALayer
from loralab.lora.variants.pissa import PISSA
from loralab.lora.variants.plain import LORAPLUS, PLAIN, RSLORA
from loralab.lora.variants.qlora import QLORA
from loralab.lora.variants.registry import (
    ANY,
    FULL,
    VARIANTS,
    MemoryTerms,
    Variant,
    active_variants,
    build_layer,
    check_supported,
    layer_settings,
    memory_terms,
    method_name,
    method_names,
    planned_methods,
    register_variant,
    unregister_variant,
    variant_keys,
    variant_named,
    variants_of,
)

# every other variant module of the package registers itself on import
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

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
    "MemoryTerms",
    "Variant",
    "active_variants",
    "build_layer",
    "check_supported",
    "layer_settings",
    "memory_terms",
    "method_name",
    "method_names",
    "planned_methods",
    "register_variant",
    "unregister_variant",
    "variant_keys",
    "variant_named",
    "variants_of",
]

"""The variant registry: every LoRA variant declared in one place, asked by everything else.

A `Variant` is turned on by one adapter config key (`name: dora`, `scaling: rs`, `init: pissa`,
`quant: nf4`, ...), may read further keys of its own (`settings`: QLoRA's `double_quant`), and
declares what it changes:

- `layer`: the layer class it wraps a base in (one per run: `adapter.name` picks it);
- `layer_types`: the layer types it supports (None: every registered `LayerType`), so a
  (variant, layer type) pair it does not support is refused in one sentence;
- `check_target` / `prepare_layer` / `prepare_model`: checks before any weight changes, and
  what it does to each new layer and to the whole model (PiSSA's init, QLoRA's quantization);
- `tag`: its part of the run name (`rs...`, `q...-nf4`, `...-pissa`);
- `peft_fields` / `peft_tensors` / `adapter_from_peft`: how it maps onto PEFT's format;
- `changes_base`: whether it rewrites the frozen base (then adapters can't share one base);
- `update_needs_base`: whether what it changes in W depends on W (the analysis needs W then);
- `off_values`: the values of its key that leave it off (LoRA-FA's `freeze_a: false`);
- `model_change`: the run log's words for what `prepare_model` did (QLoRA: quantized);
- `memory`: its terms for the memory planner (`loralab.measure.planner`), None if it has none;
- `order`: where it sits among the variants (its tag and hooks apply in this order).

Each variant module registers its variants itself (`register_variant` at its end); importing
`loralab.lora.variants` imports every module of the package, so a new built-in variant is one
new file.

Injection, merging, several adapters on one base, the PEFT format, run names and the rank
analysis all go through the functions below; none of them names a variant. A layer's fold
into its base weight (`fold_into`) is the layer class's own, so the analysis of what an
adapter changed is `fold_into(W) - W` for every variant, registered here or in a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer
from loralab.lora.layer_types import LayerType

# the value of `key` that turns a variant on: any value but null
ANY = "<any value but null>"
# the values each key takes when no variant claims it: plain LoRA's own settings
PLAIN_VALUES: dict[str, tuple[Any, ...]] = {
    "init": ("kaiming", "gaussian"),
    "scaling": ("standard",),
}
FULL = "full"  # adapter.name of full fine-tuning: no adapter at all
# the adapter settings a layer records (with every registered variant's keys), so the files
# and exports it ends up in can say how it was built (PEFT export, the rank analysis)
LAYER_SETTINGS = ("name", "rank", "alpha", "dropout", "init", "scaling")


@dataclass(frozen=True)
class MemoryTerms:
    """What a method changes in the memory of one training step, for the memory planner."""

    # the whole model trains (full fine-tuning, the no-adapter case); else the base is frozen
    base_trains: bool = False
    # bytes per frozen linear weight as stored, dequantized on the fly for each matmul
    # (QLoRA's NF4); None: stored in the training dtype
    stored_weight_bytes: float | None = None
    # A trains as well as B (LoRA-FA freezes A at its init)
    trains_a: bool = True
    # trainable numbers each adapted layer adds beyond A and B
    extra_params_per_layer: int = 0


FULL_MEMORY = MemoryTerms(base_trains=True)


class Variant:
    """One LoRA variant; subclass it, override what the variant changes, and register it."""

    name: str = "variant"
    key: str = "name"
    values: tuple[Any, ...] = ()
    # further adapter config keys it reads: part of the closed adapter schema
    settings: tuple[str, ...] = ()
    layer: type[LoRALayer] | None = None
    layer_types: tuple[str, ...] | None = None
    changes_base: bool = False
    # does the change an adapter makes to W depend on W? (PiSSA: W's top singular part)
    update_needs_base: bool = False
    # values of `key` that leave it off, the first one the default (none: the key is plain
    # LoRA's own or another variant's, see PLAIN_VALUES)
    off_values: tuple[Any, ...] = ()
    # the memory planner's terms for `--methods <name>` (None: the planner cannot plan it)
    memory: MemoryTerms | None = None
    # lower first: the order its run-name tag and its hooks apply in
    order: int = 100
    # what `prepare_model` did to the modules it returns, as the run log says it after a count
    model_change: str = "modules changed"

    def active(self, adapter: Mapping[str, Any]) -> bool:
        value = adapter.get(self.key)
        return value is not None if self.values == (ANY,) else value in self.values

    def validate(self, adapter: Mapping[str, Any]) -> None:
        """Refuse bad values of the keys this variant reads, on or off, before any change."""

    def supports(self, layer_type: LayerType) -> bool:
        return self.layer_types is None or layer_type.name in self.layer_types

    def check_target(self, name: str, module: nn.Module, adapter: Mapping[str, Any]) -> None:
        """Refuse a target this variant cannot adapt, before the first change to the model."""

    def prepare_layer(self, layer: LoRALayer, adapter: Mapping[str, Any]) -> None:
        """Change a freshly wrapped layer (e.g. PiSSA's initialisation)."""

    def prepare_model(self, model: nn.Module, adapter: Mapping[str, Any]) -> list[str]:
        """Change the whole model once every target is wrapped; returns the changed modules,
        which the injection report counts under `model_change`."""
        return []

    def tag(self, method: str, adapter: Mapping[str, Any]) -> str:
        """The method part of the run name with this variant on: lora -> rslora, ..."""
        return method

    def peft_fields(self, layer: LoRALayer) -> dict[str, Any]:
        """Fields of PEFT's adapter_config.json this variant sets on export."""
        return {}

    def peft_tensors(self, layer: LoRALayer, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """The layer's tensors as exported (key suffix -> tensor)."""
        return tensors

    def adapter_from_peft(self, peft: Mapping[str, Any]) -> dict[str, Any]:
        """The adapter settings a PEFT config implies for this variant ({} if none)."""
        return {}


VARIANTS: list[Variant] = []


def register_variant(variant: Variant) -> Variant:
    """Add a variant (a later one with the same name replaces it) in its `order`; returns it."""
    unregister_variant(variant.name)
    VARIANTS.append(variant)
    VARIANTS.sort(key=lambda v: v.order)  # stable: equal orders keep registration order
    return variant


def unregister_variant(name: str) -> None:
    VARIANTS[:] = [v for v in VARIANTS if v.name != name]


def variant_named(name: str) -> Variant:
    found = next((v for v in VARIANTS if v.name == name), None)
    if found is None:
        raise KeyError(f"no variant named {name!r}; registered: {[v.name for v in VARIANTS]}")
    return found


def layer_variants() -> list[Variant]:
    """The variants `adapter.name` picks: each brings its own layer class."""
    return [v for v in VARIANTS if v.layer is not None]


def method_names() -> list[str]:
    return [FULL, *(value for v in layer_variants() for value in v.values)]


def active_variants(adapter: Mapping[str, Any]) -> list[Variant]:
    """The variants an adapter config turns on, its values checked; exactly one brings a layer."""
    name = adapter.get("name")
    if name not in method_names() or name == FULL:
        choices = method_names()
        raise AdapterConfigError(
            f"adapter.name must be one of {', '.join(choices)}, got {name!r}; pick one with "
            f"{', '.join(f'adapter={c}' for c in choices[:-1])} or adapter={choices[-1]}."
        )
    for key, allowed in allowed_values().items():
        value = adapter.get(key, allowed[0])
        if ANY not in allowed and value not in allowed:
            shown = ", ".join(as_yaml(v) for v in allowed)
            raise AdapterConfigError(
                f"adapter.{key} must be one of {shown}, got {value!r}; "
                f"set adapter.{key}={as_yaml(allowed[0])}."
            )
    for variant in VARIANTS:
        variant.validate(adapter)
    return [v for v in VARIANTS if v.active(adapter)]


def as_yaml(value: Any) -> str:
    """A config value as it is written on the command line: null, true, nf4, ..."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def allowed_values() -> dict[str, tuple[Any, ...]]:
    """Config key -> the values it may take: plain LoRA's, plus every variant's."""
    allowed = {key: tuple(values) for key, values in PLAIN_VALUES.items()}
    for variant in VARIANTS:
        if variant.key != "name":
            values = (*variant.off_values, *variant.values)
            allowed[variant.key] = allowed.get(variant.key, ()) + values
    return allowed


def variant_keys() -> set[str]:
    """Every adapter config key a registered variant reads."""
    return {key for v in VARIANTS for key in (v.key, *v.settings)}


def layer_class(active: Iterable[Variant]) -> type[LoRALayer]:
    return next(v.layer for v in active if v.layer is not None)


def check_supported(active: Iterable[Variant], name: str, layer_type: LayerType) -> None:
    """Refuse a (variant, layer type) pair the variant does not declare, naming both."""
    for variant in active:
        if not variant.supports(layer_type):
            supported = ", ".join(variant.layer_types or ())
            article = "an" if layer_type.name[0] in "AEIOU" else "a"
            raise AdapterConfigError(
                f"the {variant.name} variant (adapter.{variant.key}) does not support "
                f"{layer_type.name} layers, and adapter.targets selects {name}, {article} "
                f"{layer_type.name}; target {supported} layers only (adapter.exclude) or "
                f"turn {variant.name} off."
            )


def build_layer(base: nn.Module, adapter: Mapping[str, Any]) -> LoRALayer:
    """The adapter layer `adapter` describes, around `base` (a fresh base: nothing trained yet)."""
    active = active_variants(adapter)
    layer = layer_class(active)(
        base,
        rank=adapter.get("rank"),
        alpha=adapter.get("alpha"),
        dropout=adapter.get("dropout", 0.0),
        init=adapter.get("init", "kaiming"),
        scaling_rule=adapter.get("scaling", "standard"),
    )
    keys = dict.fromkeys((*LAYER_SETTINGS, *sorted(variant_keys())))
    layer.settings = {key: adapter.get(key) for key in keys}
    for variant in active:
        variant.prepare_layer(layer, adapter)
    return layer


def method_name(adapter: Mapping[str, Any]) -> str:
    """lora, rslora, dora, qlora-nf4, lora-pissa, rsdora-pissa, ...: the method in one word."""
    name = str(adapter.get("name", "run"))
    if name == FULL or name not in method_names():
        return name
    for variant in VARIANTS:
        if variant.active(adapter):
            name = variant.tag(name, adapter)
    return name


def layer_settings(layer: LoRALayer) -> dict[str, Any]:
    """The adapter settings a layer was built with (by `build_layer`)."""
    settings = getattr(layer, "settings", None)
    if settings is None:  # built by hand: its own attributes are all there is
        settings = {
            "name": "lora",
            "rank": layer.rank,
            "alpha": layer.alpha,
            "init": layer.init,
            "scaling": layer.scaling_rule,
        }
    return settings


def variants_of(layer: LoRALayer) -> list[Variant]:
    """The variants a layer was built with."""
    settings = layer_settings(layer)
    return [v for v in VARIANTS if v.active(settings)]


def memory_terms(method: str) -> MemoryTerms:
    """The memory planner's terms of `full` or of a registered variant that declares them."""
    if method == FULL:
        return FULL_MEMORY
    terms = next((v.memory for v in VARIANTS if v.name == method), None)
    if terms is None:
        raise KeyError(f"no memory terms for {method!r}; methods with some: {planned_methods()}")
    return terms


def planned_methods() -> list[str]:
    """`full` and the variants the memory planner can plan (those that declare `memory`)."""
    return [FULL, *(v.name for v in VARIANTS if v.memory is not None)]

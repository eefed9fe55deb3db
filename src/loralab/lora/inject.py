"""Put LoRA into a model (`apply_adapter`) and fold it into the weights (`merge_lora`).

`apply_adapter` is the only place that decides what trains. Downstream code (the task, the
optimiser) just trains whatever has `requires_grad=True` and never asks which method it is.
Which layer wraps each target and what else changes (PiSSA's init, QLoRA's quantized base,
LoRA+'s learning-rate tag, LoRA-FA's frozen A) is the variant registry's business (`loralab.lora.variants`):
this module names no variant.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer, validate_lora_settings
from loralab.lora.layer_types import layer_type_of
from loralab.lora.params import count_parameters
from loralab.lora.quantized_base import warn_merged_in_float
from loralab.lora.targets import as_patterns, find_target_modules, match_any, resolve_trainable
from loralab.lora.variants import (
    FULL,
    active_variants,
    build_layer,
    check_supported,
    variant_keys,
)

log = logging.getLogger("loralab.lora")

# the adapter settings of every method (full fine-tuning reads name, lr and trainable; `lr` is
# the task's); with the registered variants' own keys they are the whole adapter schema, so a
# misspelt key (+adapter.rnak=4) is refused instead of silently training the default
ADAPTER_KEYS = (
    "name",
    "rank",
    "alpha",
    "dropout",
    "scaling",
    "init",
    "targets",
    "exclude",
    "trainable",
    "lr",
)


@dataclass
class AdapterReport:
    """What `apply_adapter` changed, for the run log and the run summary."""

    method: str
    replaced: list[str] = field(default_factory=list)
    trainable_modules: list[str] = field(default_factory=list)
    trainable: int = 0
    total: int = 0
    # what the variants did once every target was wrapped (`Variant.prepare_model`), in the
    # run log's words, e.g. "frozen linear layers quantized" -> the modules it was done to
    changed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def quantized(self) -> list[str]:
        """Every module a variant changed after wrapping (QLoRA: its quantized layers), under
        the name older callers read."""
        return [name for names in self.changed.values() for name in names]

    def summary(self) -> str:
        percent = 100.0 * self.trainable / self.total if self.total else 0.0
        counts = f"{self.trainable:,} of {self.total:,} parameters train ({percent:.2f}%)"
        if self.method == FULL:
            return f"full fine-tuning: {counts}"
        trained = ", ".join(self.trainable_modules) or "none"
        changed = "".join(f", {len(names)} {what}" for what, names in self.changed.items())
        return (
            f"{self.method}: {len(self.replaced)} layers wrapped{changed}, "
            f"trained in full: {trained}; {counts}"
        )


def apply_adapter(model: nn.Module, cfg: Mapping[str, Any]) -> AdapterReport:
    """Prepare `model` in place for the adaptation method `cfg.name` names.

    `cfg` is the `adapter` config group (a dict or DictConfig). Its keys must be adapter
    settings (`ADAPTER_KEYS` and the variants' keys); `lr` belongs to the task and is not
    read here.
    """
    check_adapter_keys(cfg)
    if cfg.get("name") == FULL:
        model.requires_grad_(True)
        return _report(FULL, model, [], [])
    active = active_variants(cfg)  # checks adapter.name and every variant's own keys
    if any(True for _ in lora_layers(model)):
        raise AdapterConfigError(
            f"adapter.name={cfg.get('name')} was applied to a model that already has LoRA "
            "layers; apply the adapter once, to a fresh backbone."
        )
    # check everything before the first change, so a bad config leaves the model untouched
    validate_lora_settings(
        cfg.get("rank"), cfg.get("alpha"), cfg.get("dropout", 0.0), cfg.get("scaling", "standard")
    )
    targets, trainable = _select_modules(model, cfg)
    for name in targets:
        module = model.get_submodule(name)
        check_supported(active, name, layer_type_of(module))
        for variant in active:
            variant.check_target(name, module, cfg)
    check_rank_fits(model, targets, cfg.get("rank"))

    model.requires_grad_(False)
    for name in targets:
        replace_module(model, name, build_layer(model.get_submodule(name), cfg))
    for name in trainable:
        model.get_submodule(name).requires_grad_(True)
    changed: dict[str, list[str]] = {}
    for variant in active:
        if names := variant.prepare_model(model, cfg):
            changed[variant.model_change] = changed.get(variant.model_change, []) + names

    report = _report(cfg.get("name"), model, targets, trainable)
    report.changed = changed
    log.info(
        "%s (rank=%s, alpha=%s, variants: %s) wraps %d layers: %s",
        report.method,
        cfg.get("rank"),
        cfg.get("alpha"),
        ", ".join(v.name for v in active),
        len(targets),
        ", ".join(targets),
    )
    log.info("trained in full: %s; %s", ", ".join(trainable) or "none", report.summary())
    return report


def check_adapter_keys(cfg: Mapping[str, Any]) -> None:
    """Refuse a key no adapter method or variant reads, naming the closest real one."""
    known = set(ADAPTER_KEYS) | variant_keys()
    for key in cfg:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"did you mean adapter.{close[0]}?" if close else "remove it."
            raise AdapterConfigError(
                f"adapter.{key} is not an adapter setting (the settings are "
                f"{', '.join(sorted(known))}); {hint}"
            )


def check_rank_fits(model: nn.Module, targets: list[str], rank: int) -> None:
    """Refuse a rank above that of a target's weight as a matrix (min(in, out); a conv's in
    counts every kernel tap): B @ A could never reach it, and the factors would cost more
    than the full weight."""
    kinds = {name: layer_type_of(model.get_submodule(name)) for name in targets}
    limits = {name: kinds[name].max_rank(model.get_submodule(name)) for name in targets}
    too_small = [name for name in targets if rank > limits[name]]
    if too_small:
        name = too_small[0]
        raise AdapterConfigError(
            f"adapter.rank={rank} is above min(out, in) = {limits[name]} of the weight matrix "
            f"of the targeted {kinds[name].name} layer {name} ({len(too_small)} of "
            f"{len(targets)} targets are that small); set adapter.rank to at most {min(limits.values())}, or leave such "
            "layers out with adapter.exclude."
        )


def _select_modules(model: nn.Module, cfg: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The layers LoRA wraps and the modules trained in full, in model order."""
    trainable = _find_trainable_modules(model, resolve_trainable(model, cfg.get("trainable")))
    targets = find_target_modules(model, cfg.get("targets"), cfg.get("exclude") or ())
    # a module trained in full needs no low-rank update on top
    targets = [name for name in targets if not _inside_any(name, trainable)]
    if not targets:
        raise AdapterConfigError(
            f"adapter.targets select only layers inside adapter.trainable {trainable}, "
            "so LoRA would wrap nothing; target other layers or use adapter=full."
        )
    return targets, trainable


def _find_trainable_modules(model: nn.Module, patterns: Any) -> list[str]:
    """Outermost modules of any type that `adapter.trainable` selects, in model order."""
    patterns = as_patterns(patterns, "adapter.trainable")
    names = [name for name, _ in model.named_modules() if name]
    for pattern in patterns:
        if not any(match_any(name, pattern) for name in names):
            raise AdapterConfigError(
                f"adapter.trainable entry {pattern!r} matches no module; use a module name such "
                f"as 'classifier', a glob or 're:<regex>' (top-level modules here: "
                f"{', '.join(name for name, _ in model.named_children()) or 'none'})."
            )
    selected = [name for name in names if match_any(name, patterns)]
    # `layers.1.*` selects a block and all its children; training the block covers them
    return [name for name in selected if not _inside_any(name, selected, strict=True)]


def _inside_any(name: str, parents: list[str], strict: bool = False) -> bool:
    """Whether `name` is one of `parents` (unless strict) or a module nested in one of them."""
    return any(
        name.startswith(parent + ".") or (not strict and name == parent) for parent in parents
    )


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule called `name` (dotted) sits."""
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)


def _report(
    method: str, model: nn.Module, replaced: list[str], trainable: list[str]
) -> AdapterReport:
    counts = count_parameters(model)
    return AdapterReport(method, replaced, trainable, counts.trainable, counts.total)


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALayer]]:
    """Every LoRA layer of the model with its dotted name, in model order."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALayer):
            yield name, module


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight: same outputs, no extra inference cost."""
    layers = [layer for _, layer in lora_layers(model)]
    for layer in layers:
        layer.merge(warn=False)
    warn_merged_in_float(layer.base for layer in layers)


def unmerge_lora(model: nn.Module) -> None:
    """Take every adapter back out of its base weight, e.g. to resume training."""
    for _, layer in lora_layers(model):
        layer.unmerge()

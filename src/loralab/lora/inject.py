"""Put LoRA into a model (`apply_adapter`) and fold it into the weights (`merge_lora`).

`apply_adapter` is the only place that decides what trains. Downstream code (the task, the
optimiser) just trains whatever has `requires_grad=True` and never asks which method it is.
The variants are settings of the same injection: `name: dora` picks the layer class,
`scaling`/`init` go to the layer, `quant` stores the frozen base in int8/NF4 afterwards
(QLoRA), and `lr_ratio_b` tags the B matrices with a learning-rate scale (LoRA+).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import torch
from torch import nn

from loralab.lora.dora import DoRALinear
from loralab.lora.errors import AdapterConfigError
from loralab.lora.layer import LoRALinear, validate_lora_settings
from loralab.lora.params import count_parameters
from loralab.lora.pissa import check_pissa_rank
from loralab.lora.quant import FORMATS
from loralab.lora.quantized_linear import quantize_frozen_linears
from loralab.lora.targets import as_patterns, find_target_modules, match_any

log = logging.getLogger("loralab.lora")

LAYER_CLASSES: dict[str, type[LoRALinear]] = {"lora": LoRALinear, "dora": DoRALinear}
METHODS = ("full", *LAYER_CLASSES)


@dataclass
class AdapterReport:
    """What `apply_adapter` changed, for the run log and the run summary."""

    method: str
    replaced: list[str] = field(default_factory=list)
    trainable_modules: list[str] = field(default_factory=list)
    trainable: int = 0
    total: int = 0
    quantized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        percent = 100.0 * self.trainable / self.total if self.total else 0.0
        counts = f"{self.trainable:,} of {self.total:,} parameters train ({percent:.2f}%)"
        if self.method == "full":
            return f"full fine-tuning: {counts}"
        trained = ", ".join(self.trainable_modules) or "none"
        quantized = f", {len(self.quantized)} frozen linear layers quantized" * bool(self.quantized)
        return (
            f"{self.method}: {len(self.replaced)} linear layers wrapped{quantized}, "
            f"trained in full: {trained}; {counts}"
        )


def apply_adapter(model: nn.Module, cfg: Mapping[str, Any]) -> AdapterReport:
    """Prepare `model` in place for the adaptation method `cfg.name` names.

    `cfg` is the `adapter` config group (a dict or DictConfig); keys this function does not
    use (such as `lr`) belong to other stages and are ignored.
    """
    method = cfg.get("name")
    if method == "full":
        model.requires_grad_(True)
        return _report("full", model, [], [])
    if method not in LAYER_CLASSES:
        raise AdapterConfigError(
            f"adapter.name must be one of {', '.join(METHODS)}, got {method!r}; "
            "pick one with adapter=full, adapter=lora or adapter=dora."
        )
    if any(True for _ in lora_layers(model)):
        raise AdapterConfigError(
            f"adapter.name={method} was applied to a model that already has LoRA layers; "
            "apply the adapter once, to a fresh backbone."
        )
    return _apply_lora(model, cfg, method)


def _apply_lora(model: nn.Module, cfg: Mapping[str, Any], method: str) -> AdapterReport:
    settings = {
        "rank": cfg.get("rank"),
        "alpha": cfg.get("alpha"),
        "dropout": cfg.get("dropout", 0.0),
        "init": cfg.get("init", "kaiming"),
        "scaling_rule": cfg.get("scaling", "standard"),
    }
    # check everything before the first change, so a bad config leaves the model untouched
    validate_lora_settings(**settings)
    quant, double_quant = _quant_settings(cfg)
    lr_ratio_b = _lr_ratio_b(cfg)
    targets, trainable = _select_modules(model, cfg)
    if settings["init"] == "pissa":
        for name in targets:
            check_pissa_rank(model.get_submodule(name).weight.shape, settings["rank"], name)

    model.requires_grad_(False)
    for name in targets:
        replace_module(model, name, LAYER_CLASSES[method](model.get_submodule(name), **settings))
    for name in trainable:
        model.get_submodule(name).requires_grad_(True)
    # quantize after wrapping: PiSSA splits the full-precision weight, then its residual is stored
    quantized = quantize_frozen_linears(model, quant, double_quant) if quant else []
    for _, layer in lora_layers(model):
        if isinstance(layer, DoRALinear) and quantized:
            layer.init_magnitude()  # the magnitude of the weight the layer will really see
        if lr_ratio_b is not None:
            # LoRA+: B learns `lr_ratio_b` times faster than A; the optimiser reads this tag
            layer.lora_B.lr_scale = lr_ratio_b

    report = _report(method, model, targets, trainable)
    report.quantized = quantized
    log.info(
        "%s (rank=%s, alpha=%s, scaling=%s, init=%s%s) wraps %d linear layers: %s",
        report.method,
        settings["rank"],
        settings["alpha"],
        settings["scaling_rule"],
        settings["init"],
        f", base in {quant}" if quant else "",
        len(targets),
        ", ".join(targets),
    )
    log.info("trained in full: %s; %s", ", ".join(trainable) or "none", report.summary())
    return report


def _select_modules(model: nn.Module, cfg: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The layers LoRA wraps and the modules trained in full, in model order."""
    trainable = _find_trainable_modules(model, cfg.get("trainable"))
    targets = find_target_modules(model, cfg.get("targets"), cfg.get("exclude") or ())
    # a module trained in full needs no low-rank update on top
    targets = [name for name in targets if not _inside_any(name, trainable)]
    if not targets:
        raise AdapterConfigError(
            f"adapter.targets select only layers inside adapter.trainable {trainable}, "
            "so LoRA would wrap nothing; target other layers or use adapter=full."
        )
    return targets, trainable


def _quant_settings(cfg: Mapping[str, Any]) -> tuple[str | None, bool]:
    """`adapter.quant` (null, int8 or nf4) and `adapter.double_quant`, checked."""
    quant, double_quant = cfg.get("quant"), cfg.get("double_quant", False)
    if quant is not None and quant not in FORMATS:
        raise AdapterConfigError(
            f"adapter.quant must be null, {' or '.join(FORMATS)}, got {quant!r}; "
            "set adapter.quant=nf4 (4-bit, QLoRA) or adapter.quant=null (full precision)."
        )
    if not isinstance(double_quant, bool):
        raise AdapterConfigError(
            f"adapter.double_quant must be true or false, got {double_quant!r}; "
            "set adapter.double_quant=true to also quantize the quantization scales."
        )
    return quant, double_quant


def _lr_ratio_b(cfg: Mapping[str, Any]) -> float | None:
    """`adapter.lr_ratio_b` (LoRA+): null, or a positive number."""
    ratio = cfg.get("lr_ratio_b")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, Real) or ratio <= 0):
        raise AdapterConfigError(
            f"adapter.lr_ratio_b must be null or a positive number, got {ratio!r}; "
            "set adapter.lr_ratio_b=16 (LoRA+) or adapter.lr_ratio_b=null (one learning rate)."
        )
    return None if ratio is None else float(ratio)


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


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """Every LoRA layer of the model with its dotted name, in model order."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight: same outputs, no extra inference cost."""
    for _, layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every adapter back out of its base weight, e.g. to resume training."""
    for _, layer in lora_layers(model):
        layer.unmerge()


@torch.no_grad()
def max_merge_diff(model: nn.Module, *inputs: Any, **kwargs: Any) -> float:
    """Largest |merged - unmerged| output on the given inputs: merging must change nothing.

    Runs in eval mode (no dropout) and leaves the model as it found it: same mode, and each
    layer merged or not as before.
    """
    layers = [layer for _, layer in lora_layers(model)]
    was_merged = [layer.merged for layer in layers]
    # per-module modes: a model may keep some submodules in eval on purpose
    was_training = {module: module.training for module in model.modules()}
    model.eval()
    try:
        unmerge_lora(model)
        unmerged = output_tensor(model(*inputs, **kwargs))
        merge_lora(model)
        merged = output_tensor(model(*inputs, **kwargs))
    finally:
        for layer, merged_before in zip(layers, was_merged, strict=True):
            if merged_before:
                layer.merge()
            else:
                layer.unmerge()
        for module, training in was_training.items():
            module.training = training
    if unmerged.numel() == 0:
        return 0.0
    return (merged.float() - unmerged.float()).abs().max().item()


def output_tensor(output: Any) -> torch.Tensor:
    """The tensor to compare: the output itself, its `logits`, or the first of a tuple."""
    if isinstance(output, Mapping) and "logits" in output:
        output = output["logits"]
    elif hasattr(output, "logits"):
        output = output.logits
    elif isinstance(output, tuple | list) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"max_merge_diff needs a tensor output (or .logits), got {type(output)}")
    return output

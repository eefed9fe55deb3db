"""How many parameters train: the cost axis of every LoRA vs. full fine-tuning comparison."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from torch import nn

from loralab.lora.layer import LoRALayer
from loralab.lora.layer_types import layer_type_of
from loralab.lora.quantized_base import QuantizedBase


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> ParamCount:
    """Trainable and total parameter counts; a tied (shared) parameter counts once.

    A quantized frozen weight (QLoRA) is stored as buffers, yet it is still out x in
    parameters of the model: it counts in `total`, so every variant has the same total.
    """
    # model.parameters() already yields each shared tensor once
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    total += sum(m.shape.numel() for m in model.modules() if isinstance(m, QuantizedBase))
    return ParamCount(trainable=trainable, total=total)


def base_weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the model's own weights as stored, and as they would be in float32; the same
    for just the frozen linear weights (`nn.Linear`, GPT-2's `Conv1D`), the part QLoRA quantizes.

    "Own" means everything but the adapter's tensors (A, B, a DoRA magnitude): the frozen
    base, plus any module trained in full. A quantized layer counts its codes and scales,
    honestly, padding included; its float32 size is out x in x 4 bytes. Embeddings stay in
    full precision under QLoRA, so in a small model with a large vocabulary the whole base
    shrinks far less than its linear layers do.
    """
    layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
    adapter = {id(t) for layer in layers for t in layer.adapter_parameters().values()}
    quantized = [m for m in model.modules() if isinstance(m, QuantizedBase)]
    codes_and_scales = {id(t) for q in quantized for t in q.stored_tensors()}
    stored = fp32 = 0
    seen: set[int] = set()  # state_dict lists a tied weight under each of its names
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) in seen or id(tensor) in adapter:
            continue
        seen.add(id(tensor))
        stored += tensor.numel() * tensor.element_size()
        if id(tensor) not in codes_and_scales:
            fp32 += tensor.numel() * (4 if tensor.is_floating_point() else tensor.element_size())
    fp32 += sum(4 * q.shape.numel() for q in quantized)

    frozen = [m.weight for m in model.modules() if is_quantizable(m) and not m.weight.requires_grad]
    linear = sum(w.numel() * w.element_size() for w in frozen)
    linear += sum(q.stored_bytes() for q in quantized)
    linear_fp32 = sum(4 * w.numel() for w in frozen) + sum(4 * q.shape.numel() for q in quantized)
    return {
        "base_weight_bytes": stored,
        "base_weight_bytes_fp32": fp32,
        "frozen_linear_bytes": linear,
        "frozen_linear_bytes_fp32": linear_fp32,
    }


def is_quantizable(module: nn.Module) -> bool:
    """A plain layer of a type QLoRA stores quantized (not one that is quantized already)."""
    kind = layer_type_of(module)
    return kind is not None and kind.quantizable and not isinstance(module, QuantizedBase)


def _parameter_groups(model: nn.Module) -> dict[str, ParamCount]:
    """Counts per top-level module, with all LoRA matrices in a group of their own."""
    layers = [module for module in model.modules() if isinstance(module, LoRALayer)]
    lora_ids = {id(param) for layer in layers for param in layer.adapter_parameters().values()}
    # "lora_A/lora_B", plus "/lora_magnitude" for DoRA
    kinds = "/".join(n for n, _ in layers[0].named_parameters(recurse=False)) if layers else ""
    lora_group = f"{kinds} in {len(layers)} layers"
    trainable: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for name, param in model.named_parameters():
        group = lora_group if id(param) in lora_ids else name.split(".")[0]
        total[group] += param.numel()
        if param.requires_grad:
            trainable[group] += param.numel()
    # Counter keeps insertion order: groups appear in model order
    return {group: ParamCount(trainable[group], total[group]) for group in total}


def parameter_table(model: nn.Module, title: str = "Parameters") -> Table:
    """Where the parameters are and which of them train, one row per top-level group."""
    table = Table(title=title)
    table.add_column("group")
    table.add_column("trainable", justify="right")
    table.add_column("total", justify="right")
    table.add_column("trainable %", justify="right")
    for group, count in _parameter_groups(model).items():
        table.add_row(group, f"{count.trainable:,}", f"{count.total:,}", f"{count.percent:.2f}%")
    overall = count_parameters(model)
    table.add_section()
    table.add_row(
        "total",
        f"{overall.trainable:,}",
        f"{overall.total:,}",
        f"{overall.percent:.2f}%",
        style="bold",
    )
    return table


def format_parameter_table(model: nn.Module, title: str = "Parameters") -> str:
    """The parameter table as plain text, for the console and the run log alike."""
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(parameter_table(model, title))
    return console.export_text()

"""Which modules get LoRA: name patterns resolved against the layers LoRA can wrap.

The layers LoRA can wrap are those of a registered `LayerType` (`layer_types.py`).

A pattern is one of
  * an exact dotted name (`layers.0.attn.q_proj`) or a suffix on a dot boundary
    (`q_proj`, `attn.q_proj`), the convention PEFT users know;
  * a glob if it holds any of `*?[` (`*.q_proj`, `layers.1.*`), matched against the full name;
  * a regex after `re:` (`re:layers\\.[01]\\..*_proj`), full-matched against the full name;
  * `all-linear`: every linear layer (layer types marked `linear`: `nn.Linear` and GPT-2's
    `Conv1D`, as in PEFT) except output heads (see `OUTPUT_HEAD_NAMES`).

A selected layer must take an exact update: a layer type can refuse one of its layers (a
grouped convolution), and a layer whose weight is tied to another module's (GPT-2's `wte`
and `lm_head`) is refused, since folding the update in would change the other module too.

`adapter.trainable: auto` (the default) trains the model's task head in full: a Hugging
Face model's modules beside its base model (BERT's `classifier`, GPT-2's and Llama's `score`;
none for a causal LM, whose `lm_head` is pretrained), or a top-level `classifier` / `score`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from loralab.errors import AdapterConfigError
from loralab.lora.layer import LoRALayer
from loralab.lora.layer_types import layer_type_of, type_names

ALL_LINEAR = "all-linear"
AUTO = "auto"
# the names a new task's head goes by in models that are not Hugging Face ones
NEW_HEAD_NAMES = ("classifier", "score")
REGEX_PREFIX = "re:"
GLOB_CHARS = "*?["
# a new task's head is trained in full (or not at all), never given a low-rank update
OUTPUT_HEAD_NAMES = ("classifier", "lm_head", "score", "head", "cls")
HOW_TO_TARGET = (
    "use an exact name, a suffix like 'q_proj', a glob like '*.q_proj', "
    "'re:<regex>' or 'all-linear'"
)


def as_patterns(patterns: Iterable[str] | str | None, key: str) -> list[str]:
    """A config value as a list of checked patterns; a single string is one pattern."""
    if patterns is None:
        return []
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    for pattern in items:
        if not isinstance(pattern, str) or not pattern:
            raise AdapterConfigError(
                f"{key} entries must be non-empty strings, got {pattern!r}; {HOW_TO_TARGET}."
            )
        if pattern.startswith(REGEX_PREFIX):
            try:
                re.compile(pattern[len(REGEX_PREFIX) :])
            except re.error as err:
                raise AdapterConfigError(
                    f"{key} entry {pattern!r} is not a valid regular expression ({err}); "
                    "fix the regex after 're:'."
                ) from None
    return items


def matches(name: str, pattern: str) -> bool:
    """Whether one dotted module name is selected by one pattern (`all-linear` aside)."""
    if pattern.startswith(REGEX_PREFIX):
        return re.fullmatch(pattern[len(REGEX_PREFIX) :], name) is not None
    if any(char in pattern for char in GLOB_CHARS):
        return fnmatch.fnmatchcase(name, pattern)
    # the dot boundary keeps `proj` from matching `q_proj`
    return name == pattern or name.endswith("." + pattern)


def match_any(name: str, patterns: Iterable[str] | str) -> bool:
    """Whether any pattern selects `name`; shared by target and trainable-module selection."""
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(matches(name, pattern) for pattern in patterns)


def is_output_head(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in OUTPUT_HEAD_NAMES


def adaptable_modules(model: nn.Module) -> list[str]:
    """Names of the layers LoRA can wrap, in model order."""
    names: list[str] = []
    skip: set[str] = set()
    for name, module in model.named_modules():  # parents come before their children
        if isinstance(module, LoRALayer | nn.MultiheadAttention):
            # a LoRA layer's inner base is already wrapped; nn.MultiheadAttention reads
            # `out_proj.weight` directly instead of calling out_proj, so a wrapper would be ignored
            skip.update(
                f"{name}.{child}" if name else child for child, _ in module.named_children()
            )
        elif layer_type_of(module) is not None and name and name not in skip:
            # name "" is the model itself, which has no parent to swap it in
            names.append(name)
    return names


def is_linear(model: nn.Module, name: str) -> bool:
    layer_type = layer_type_of(model.get_submodule(name))
    return layer_type is not None and layer_type.linear


def find_target_modules(
    model: nn.Module,
    patterns: Sequence[str] | str,
    exclude: Iterable[str] = (),
) -> list[str]:
    """Dotted names of the adaptable layers the patterns select, minus `exclude`, in model order.

    Every pattern must select at least one layer: a typo in a target list would otherwise
    train a different model than the one the researcher asked for, silently.
    """
    patterns = as_patterns(patterns, "adapter.targets")
    exclude = as_patterns(exclude, "adapter.exclude")
    if not patterns:
        raise AdapterConfigError(
            f"adapter.targets is empty, so LoRA would adapt nothing; {HOW_TO_TARGET}."
        )
    candidates = adaptable_modules(model)
    selected: set[str] = set()
    for pattern in patterns:
        if pattern == ALL_LINEAR:
            hits = [n for n in candidates if is_linear(model, n) and not is_output_head(n)]
        else:
            hits = [name for name in candidates if matches(name, pattern)]
        if not hits and pattern != ALL_LINEAR:
            _refuse_unsupported_type(model, pattern)
        if not hits:
            raise AdapterConfigError(
                f"adapter.targets entry {pattern!r} matches no layer LoRA can adapt "
                f"({type_names()}); {HOW_TO_TARGET} (adaptable layers here: "
                f"{_preview(candidates)})."
            )
        selected.update(hits)
    targets = [name for name in candidates if name in selected and not match_any(name, exclude)]
    if not targets:
        raise AdapterConfigError(
            f"adapter.exclude {exclude} removes every module adapter.targets {patterns} selects; "
            "narrow adapter.exclude or widen adapter.targets."
        )
    check_exact_updates(model, targets)
    return targets


def check_exact_updates(model: nn.Module, targets: Sequence[str]) -> None:
    """Refuse a target whose update could not be folded in exactly, naming it and the fix."""
    owners = parameter_owners(model)
    for name in targets:
        module = model.get_submodule(name)
        reason = layer_type_of(module).refusal(module)
        tied = [o for p in module.parameters(recurse=False) for o in owners[id(p)] if o != name]
        if tied:
            reason = (
                f"whose weight is tied to {tied[0]}'s, so folding its update in would change "
                f"{tied[0]} too"
            )
        if reason:
            raise AdapterConfigError(
                f"adapter.targets selects {name}, {reason}; leave it out "
                f"(adapter.exclude=[{name}]) or target other layers."
            )


def parameter_owners(model: nn.Module) -> dict[int, list[str]]:
    """id of each parameter -> the modules holding it directly (more than one: tied)."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append(name)
    return owners


def task_heads(model: nn.Module) -> list[str]:
    """The modules `adapter.trainable: auto` trains in full: the head a new task added."""
    children = dict(model.named_children())
    prefix = getattr(model, "base_model_prefix", None)
    if prefix not in children:  # not a Hugging Face model
        return [name for name in children if name in NEW_HEAD_NAMES]
    getter = getattr(model, "get_output_embeddings", None)
    output = getter() if getter else None  # a language model's pretrained head
    return [
        name
        for name, child in children.items()
        if name != prefix
        and any(True for _ in child.parameters())
        and not any(sub is output for sub in child.modules())
    ]


def resolve_trainable(model: nn.Module, trainable: Any) -> Any:
    """`adapter.trainable`, with `auto` replaced by the model's task head."""
    return task_heads(model) if trainable == AUTO else trainable


def _refuse_unsupported_type(model: nn.Module, pattern: str) -> None:
    """A pattern that names layers of a type LoRA cannot wrap says which type they are."""
    found = [
        (n, m)
        for n, m in model.named_modules()
        if n and matches(n, pattern) and layer_type_of(m) is None
    ]
    if found:
        name, module = found[0]
        raise AdapterConfigError(
            f"adapter.targets entry {pattern!r} matches {name}, a {type(module).__name__}, "
            f"which LoRA cannot adapt; target layers of a supported type ({type_names()})."
        )


def _preview(names: Sequence[str], limit: int = 6) -> str:
    """A few names, enough to show the naming scheme without flooding the message."""
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")

"""`compile=true`: `torch.compile` the adapted model for training and evaluation.

Regional compilation (the default, `compile_options.scope=regional`) compiles the forward of
each repeated block (the transformer layers: a `ModuleList` of one class) rather than the
whole model. The blocks share one code object, so the first block's compiled graph serves
every other (their weights are graph inputs): compile time is that of one layer, not of the
model, and the embedding, head and loss stay eager. `scope=whole` compiles the model's own
forward instead, e.g. for a model with no repeated blocks.

Nothing a run saves changes: the module tree, its parameter names and its checkpoints are those
of the eager model, since only each compiled module's `forward` is replaced (by one that calls
the compiled function). A block that fails to compile (a backend error, an operator the
compiler cannot trace) warns once, naming the block, and runs eagerly from then on; an error
of the model itself is raised by the eager call as it would be without `compile=true`.
Recompilation (a new batch shape, a merged adapter) follows torch.compile's own limits: past
them a block runs eagerly, as torch.compile decides and logs.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from loralab.compat import compile_errors
from loralab.errors import ConfigError

log = logging.getLogger(__name__)

SCOPES = ("regional", "whole")


class CompiledForward:
    """A module's forward that runs compiled, and eagerly after the compiler once failed."""

    def __init__(self, eager: Callable[..., Any], where: str, **options: Any) -> None:
        self.eager = eager
        self.where = where
        self.compiled = torch.compile(eager, **options)
        self.failed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except compile_errors() as error:
            self.failed = True
            warnings.warn(
                f"compile: {self.where} could not be compiled ({reason(error)}); it runs "
                "eagerly (compile=false runs the whole model eagerly).",
                stacklevel=2,
            )
            return self.eager(*args, **kwargs)


def reason(error: BaseException) -> str:
    """The first line of what went wrong: the backend's own error where the compiler wraps one."""
    cause = getattr(error, "inner_exception", None) or error.__cause__ or error
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__


def repeated_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, block) of every outermost ModuleList whose 2+ children share one class."""
    found: list[tuple[str, nn.Module]] = []
    inside: list[str] = []
    for path, module in model.named_modules():
        if any(path.startswith(prefix + ".") for prefix in inside):
            continue
        children = list(module.children()) if isinstance(module, nn.ModuleList) else []
        if len(children) >= 2 and len({type(child) for child in children}) == 1:
            inside.append(path)
            found += [(f"{path}.{i}", child) for i, child in enumerate(children)]
    return found


def compile_model(
    model: nn.Module,
    scope: str = "regional",
    backend: str = "inductor",
    mode: str | None = None,
    dynamic: bool | None = None,
) -> list[str]:
    """Compile the model's repeated blocks (or its whole forward) in place; their paths."""
    if scope not in SCOPES:
        raise ConfigError(
            f"compile_options.scope must be one of {', '.join(SCOPES)}, got {scope!r}; set "
            "compile_options.scope=regional (each repeated block) or whole (the model)."
        )
    blocks = repeated_blocks(model) if scope == "regional" else []
    if not blocks:
        if scope == "regional":
            log.info("compile: %s has no repeated blocks; compiling it whole", type(model).__name__)
        blocks = [("", model)]
    options = {"backend": backend, "mode": mode, "dynamic": dynamic}
    for path, block in blocks:
        where = f"{path or 'the model'} ({type(block).__name__})"
        block.forward = CompiledForward(block.forward, where, **options)
    kinds = sorted({type(block).__name__ for _, block in blocks})
    log.info("compile: %d modules (%s), backend %s", len(blocks), ", ".join(kinds), backend)
    return [path for path, _ in blocks]

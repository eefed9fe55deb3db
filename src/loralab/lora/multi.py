"""Several named adapters on one frozen base, one active at a time.

One pretrained model, many small adapters (a solver, a critic, a reviser; or one per task):
only the adapters differ, so only they should be stored, and switching should cost nothing.
`MultiAdapterModel` keeps, for each adapter, the modules that sit in the base model while
it is active (the LoRA wrappers around the shared base layers, and its own copy of each
module it trains in full, e.g. a task head). Switching puts those modules in place and the
base's own back; it moves module references only. Every wrapper points at the very same
base `nn.Linear`, so the base weights are never reloaded, copied or changed.

With an adapter active, the model is exactly the single-adapter model: same modules, same
parameter names, so `save_adapter`, `load_adapter`, training and `merge_lora` all work on it.
The base's identity is taken once, from the bare model: each saved adapter records it, and
an adapter file trained on another base is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from loralab.errors import AdapterConfigError
from loralab.io import to_plain
from loralab.lora.identity import BaseIdentity, base_identity
from loralab.lora.inject import AdapterReport, apply_adapter, replace_module
from loralab.lora.state import load_adapter, read_adapter_metadata, save_adapter
from loralab.lora.variants import FULL, active_variants


class MultiAdapterModel:
    """Named adapters over `model`, which stays the one base they share."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        # adapter name -> {dotted path: the module that sits there while it is active}
        self.adapters: dict[str, dict[str, nn.Module]] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        # dotted path -> the base model's own module there
        self.base_modules: dict[str, nn.Module] = {}
        self.active: str | None = None
        # the shared base's fingerprint, taken once while no adapter is in it
        self.base = base_identity(model)
        # adapter name -> the modules it trains in full (a copy each; not part of its base)
        self.trained_in_full: dict[str, list[str]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.adapters

    def __iter__(self) -> Iterator[str]:
        return iter(self.adapters)

    def add_adapter(self, name: str, cfg: Mapping[str, Any]) -> AdapterReport:
        """Create adapter `name` from an `adapter` config; the active adapter stays active."""
        cfg = to_plain(cfg)
        self._check_new(name, cfg)
        with self.disable_adapters():  # build it on the bare base
            report = apply_adapter(self.model, cfg)
            modules: dict[str, nn.Module] = {}
            for path in report.replaced:
                modules[path] = self.model.get_submodule(path)
                self.base_modules.setdefault(path, modules[path].base)
            for path in report.trainable_modules:
                # apply_adapter unfroze the base's own module: the adapter trains a copy of it
                own = self.model.get_submodule(path)
                modules[path] = copy.deepcopy(own)
                self.base_modules.setdefault(path, own.requires_grad_(False))
            for path in modules:
                replace_module(self.model, path, self.base_modules[path])
        self.adapters[name] = modules
        self.configs[name] = cfg
        self.trained_in_full[name] = list(report.trainable_modules)
        return report

    def base_of(self, name: str) -> BaseIdentity:
        """The identity of the base adapter `name` sits on (its own trained modules left out)."""
        return self.base.without(self.trained_in_full[name])

    def _check_new(self, name: str, cfg: Mapping[str, Any]) -> None:
        if name in self.adapters:
            raise AdapterConfigError(f"an adapter named {name!r} exists already; pick a new name.")
        if cfg.get("name") == FULL:
            raise AdapterConfigError(
                f"adapter {name!r} has adapter.name=full, which trains the shared base itself; "
                "use adapter.name=lora or dora for named adapters."
            )
        for variant in active_variants(cfg):
            if variant.changes_base:
                raise AdapterConfigError(
                    f"adapter {name!r} sets adapter.{variant.key}={cfg[variant.key]} "
                    f"({variant.name}), which changes the base weights every adapter shares; "
                    f"leave adapter.{variant.key} at its default for named adapters."
                )

    def set_adapter(self, name: str) -> None:
        """Make `name` the active adapter (the previous one is put aside, not lost)."""
        if name not in self.adapters:
            raise AdapterConfigError(
                f"no adapter named {name!r}; add it first (adapters here: "
                f"{', '.join(self.adapters) or 'none'})."
            )
        self._put_aside()
        for path, module in self.adapters[name].items():
            # follow the base if it moved (e.g. to a GPU) while this adapter was aside
            device = next(self.base_modules[path].parameters()).device
            replace_module(self.model, path, module.to(device))
        self.active = name

    def _put_aside(self) -> None:
        if self.active is not None:
            for path in self.adapters[self.active]:
                replace_module(self.model, path, self.base_modules[path])
        self.active = None

    @contextmanager
    def disable_adapters(self) -> Iterator[nn.Module]:
        """The bare base model inside the block; the active adapter comes back after it."""
        previous = self.active
        self._put_aside()
        try:
            yield self.model
        finally:
            if previous is not None:
                self.set_adapter(previous)

    @contextmanager
    def using(self, name: str | None) -> Iterator[nn.Module]:
        """Adapter `name` (or none) active inside the block; the previous one after it."""
        previous = self.active
        try:
            if name is None:
                self._put_aside()
            else:
                self.set_adapter(name)
            yield self.model
        finally:
            if previous is None:
                self._put_aside()
            else:
                self.set_adapter(previous)

    def save_adapter(self, name: str, path: str | Path) -> int:
        """Write adapter `name` as an adapter.safetensors (with its config); returns bytes."""
        with self.using(name):
            return save_adapter(
                path, self.model, {"adapter": self.configs[name]}, base=self.base_of(name)
            )

    def load_adapter(
        self, name: str, path: str | Path, allow_other_base: bool = False
    ) -> AdapterReport:
        """Add adapter `name` from a file that `save_adapter` or a training run wrote.

        A file trained on another base is refused (unless `allow_other_base`), and a failed
        load leaves no adapter `name` behind.
        """
        cfg = read_adapter_metadata(path).get("adapter")
        if not cfg:
            raise AdapterConfigError(
                f"adapter file {path} holds no adapter config in its metadata; load a file "
                "written by a loralab training run or MultiAdapterModel.save_adapter."
            )
        report = self.add_adapter(name, cfg)
        try:
            with self.using(name):
                load_adapter(
                    path, self.model, base=self.base_of(name), allow_other_base=allow_other_base
                )
        except BaseException:
            self.delete_adapter(name)  # a failed load leaves no half-built adapter behind
            raise
        return report

    def delete_adapter(self, name: str) -> None:
        """Remove adapter `name`; the base and the other adapters stay as they are."""
        if name not in self.adapters:
            raise AdapterConfigError(
                f"no adapter named {name!r} to delete (adapters here: "
                f"{', '.join(self.adapters) or 'none'})."
            )
        if self.active == name:
            self._put_aside()
        del self.adapters[name]
        del self.configs[name]
        del self.trained_in_full[name]

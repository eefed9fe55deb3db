"""Checks of a run's config before anything is built, each failing in one sentence.

- `check_known_keys`: a key of an instantiated group (data, model, task, trainer) that its
  `_target_` does not take, e.g. `+data.n_trian=100` or `+trainer.max_epoch=3`: Hydra would
  pass it on and the constructor's TypeError would arrive as a wrapped traceback.
- `check_learning_rate`: a learning rate <= 0 (torch's ValueError comes at the first step).
- `check_devices`: a trainer that needs a GPU (or NCCL) on a machine that has none, with the
  trainer to use instead.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from loralab.errors import ConfigError

# the groups whose nodes are instantiated; callbacks and loggers stay open (users add entries)
INSTANTIATED_GROUPS = ("data", "model", "task")
# a target's parameters are listed in the message up to this many (Trainer has 40)
MAX_LISTED = 16


def parameters_of(target: Any) -> list[str] | None:
    """The keyword parameters a `_target_` takes; None when it takes any (**kwargs)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def check_known_keys(node: Any, key: str) -> None:
    """Every key of an instantiated node (and of the nodes nested in it) is a parameter."""
    if not isinstance(node, DictConfig):
        return
    for name, child in node.items_ex(resolve=False):
        check_known_keys(child, f"{key}.{name}")
    if "_target_" not in node:
        return
    try:
        target: Callable[..., Any] = get_object(str(node._target_))
    except Exception:  # noqa: BLE001 - an unimportable target fails in instantiate, named there
        return
    accepted = parameters_of(target)
    if accepted is None:
        return
    for name in node:
        if str(name).startswith("_") or name in accepted:
            continue
        close = difflib.get_close_matches(str(name), accepted, n=1)
        fix = f"did you mean {key}.{close[0]}?" if close else "remove it."
        settings = [p for p in accepted if p not in ("self", "model")]
        takes = f" (it takes {', '.join(settings)})" if len(settings) <= MAX_LISTED else ""
        raise ConfigError(f"{key}.{name} is not a setting of {node._target_}{takes}; {fix}")


def check_learning_rate(cfg: DictConfig) -> None:
    """The optimizer's learning rate is a number > 0, named by the key the user sets."""
    lr = OmegaConf.select(cfg, "task.optimizer.lr", default=None)
    if lr is None:
        return
    adapter_lr = OmegaConf.select(cfg, "adapter.lr", default=None)
    key = "adapter.lr" if adapter_lr == lr else "task.optimizer.lr"
    if isinstance(lr, bool) or not isinstance(lr, Real) or not lr > 0:
        raise ConfigError(
            f"{key}={lr!r} is not a learning rate: it must be a number > 0; set e.g. "
            f"{key}=1e-2 (LoRA) or {key}=1e-3 (full fine-tuning)."
        )


def check_run_config(cfg: DictConfig) -> None:
    """The checks of the run's own groups, before its data or backbone is built."""
    for group in INSTANTIATED_GROUPS:
        if group in cfg:
            check_known_keys(cfg[group], group)
    check_learning_rate(cfg)


def has_gpu() -> bool:
    """A CUDA device, or Apple's MPS (Lightning's accelerator=gpu takes either)."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


def check_devices(trainer: DictConfig) -> None:
    """A trainer config this machine can run: its keys are Trainer's, its devices exist."""
    check_known_keys(trainer, "trainer")
    accelerator = str(trainer.get("accelerator", "cpu"))
    backend = OmegaConf.select(trainer, "strategy.process_group_backend", default=None)
    distributed = backend is not None or (
        isinstance(trainer.get("devices"), int) and trainer.get("devices") > 1
    )
    if accelerator in ("gpu", "cuda") and not has_gpu():
        instead = "trainer=ddp_sim (DDP over CPU processes)" if distributed else "trainer=cpu"
        raise ConfigError(
            f"trainer.accelerator={accelerator} needs a GPU and this machine has none "
            f"(torch.cuda.is_available() is False); use {instead}."
        )
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError(
            "trainer.strategy.process_group_backend=nccl needs CUDA GPUs and this machine has "
            "none; use trainer=ddp_sim (gloo over CPU processes)."
        )

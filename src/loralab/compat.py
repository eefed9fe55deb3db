"""Every private Lightning, Hydra, torch and `datasets` API loralab relies on, in one module.

Private names (a leading underscore, `hydra._internal`) can move in any release. loralab
needs a few of them: there is no public way to reuse Lightning's per-device process launcher,
to write a checkpoint under a temporary name, to load a loader's saved position late, to mark
a finished Hydra job as failed, to key a cache by a dataset's fingerprint or by a tensor's
version, or to add to a TensorBoard run's open event file. Each one is reached through this
module only, and `tests/test_compat.py` fails loudly, naming the API, when a pinned upgrade
moves one. A leaf: it imports nothing of loralab, so every layer (and the Hydra plugins) may
use it.
"""

from __future__ import annotations

import importlib
from typing import Any

import lightning as L
import torch
from hydra._internal.core_plugins import basic_sweeper as _basic_sweeper_module
from hydra.core.utils import JobReturn
from lightning.fabric.strategies.launchers.subprocess_script import _basic_subprocess_cmd
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loops.fit_loop import _FitLoop
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher as SubprocessScriptLauncher,
)

__all__ = ["SubprocessScriptLauncher", "basic_sweeper"]


def basic_sweeper() -> type:
    """Hydra's BasicSweeper as Hydra uses it now: its plugin scan re-executes the module that
    defines it, so the class must be looked up at the time a subclass is defined."""
    module = importlib.import_module(_basic_sweeper_module.__name__)
    return module.BasicSweeper


# Private hooks that loralab's subclasses override: (class, method). Overriding a hook that
# was renamed would silently do nothing, so the compat test checks each one exists.
OVERRIDDEN_HOOKS: list[tuple[type, str]] = [
    (ModelCheckpoint, "_save_checkpoint"),  # callbacks.AtomicModelCheckpoint
    (DDPStrategy, "_configure_launcher"),  # run.distributed.HydraDDPStrategy
    (FSDPStrategy, "_configure_launcher"),  # run.distributed.HydraFSDPStrategy
    (SubprocessScriptLauncher, "_call_children_scripts"),  # run.distributed.HydraJobLauncher
    (SubprocessScriptLauncher, "_check_can_spawn_children"),
    (basic_sweeper(), "split_arguments"),  # hydra_plugins' PointsSweeper
    (basic_sweeper(), "split_overrides_to_chunks"),
]
# Private attributes read or written on instances: (class, attribute, where it is set)
PRIVATE_ATTRIBUTES: list[tuple[type, str]] = [
    (ModelCheckpoint, "_last_checkpoint_saved"),
    (DDPStrategy, "_start_method"),
    (DDPStrategy, "_launcher"),
    (FSDPStrategy, "_launcher"),
    (JobReturn, "_return_value"),
    # and datasets.Dataset._fingerprint (an instance attribute; tests/test_compat.py checks it)
]


def basic_subprocess_command() -> list[str]:
    """The command line Lightning re-runs for each extra device outside Hydra."""
    return list(_basic_subprocess_cmd())


def check_can_spawn_children(launcher: SubprocessScriptLauncher) -> None:
    """Lightning's own refusal to start processes from a process it started."""
    launcher._check_can_spawn_children()


def record_saved_checkpoint(callback: ModelCheckpoint, filepath: str) -> None:
    """Tell a ModelCheckpoint the file it saved lives at `filepath` (it renamed it)."""
    callback._last_checkpoint_saved = filepath


def load_saved_loader_states(trainer: L.Trainer) -> None:
    """Hand a restarting fit loop's saved loader states to the loaders now (a no-op otherwise)."""
    trainer.fit_loop._load_combined_loader_states()


def uses_popen(strategy: DDPStrategy) -> bool:
    """Whether Lightning starts the extra processes itself (not a cluster, not spawn)."""
    return strategy._start_method == "popen"


def set_launcher(strategy: DDPStrategy | FSDPStrategy, launcher: Any) -> None:
    strategy._launcher = launcher


def has_launcher(strategy: DDPStrategy | FSDPStrategy) -> bool:
    return strategy._launcher is not None


def job_return_value(job: JobReturn) -> Any:
    """What a Hydra job returned, without raising for a failed one (`return_value` does)."""
    return job._return_value


def set_job_return_value(job: JobReturn, value: Any) -> None:
    job._return_value = value


def joblib_execute_job() -> Any:
    """The joblib launcher's function that runs one Hydra job of a sweep where it is called."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    return execute_job


def sync_module_states(module: Any) -> None:
    """Every rank takes rank 0's parameters and buffers (Lightning's helper, before sharding)."""
    from lightning.pytorch.overrides.distributed import _sync_module_states

    _sync_module_states(module)


def compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when it cannot compile (not errors of the model itself)."""
    from torch._dynamo.exc import TorchDynamoException

    return (TorchDynamoException,)


def dataset_fingerprint(dataset: Any) -> str:
    """The hash `datasets` keeps of a Dataset's content and history (no public accessor), so
    a cache derived from it changes exactly when the data does."""
    return dataset._fingerprint


def tensorboard_file_writer(writer: Any) -> Any:
    """The event-file writer of a SummaryWriter, reopened if closed (`add_hparams` would start
    another run folder instead)."""
    return writer._get_file_writer()


def datamodule_state_key(datamodule: L.LightningDataModule) -> str:
    """The checkpoint key under which Lightning saves a data module's `state_dict()`."""
    return type(datamodule).__qualname__


def tensor_version(tensor: torch.Tensor) -> int:
    """How many times the tensor was changed in place (autograd's version counter): a cache
    derived from a tensor is stale exactly when this moved."""
    return tensor._version


def unscale_before_the_step(optimizer: Any) -> None:
    """Have mixed precision treat a fused torch optimizer like any other.

    A fused optimizer (`fused=True`) tells AMP that it unscales gradients inside its own step
    (`_step_supports_amp_scaling`); Lightning then refuses gradient clipping under any mixed
    precision, bf16 included, which has no scale to undo. With the flag off, a GradScaler
    (fp16) unscales the gradients before the step, as it does for every optimizer, Lightning
    clips them, and the fused step itself is the same.
    """
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        optimizer._step_supports_amp_scaling = False


def missing_private_apis() -> list[str]:
    """The private APIs above that the installed versions no longer have (empty when fine)."""
    missing = [
        f"{cls.__module__}.{cls.__qualname__}.{name}"
        for cls, name in OVERRIDDEN_HOOKS
        if not callable(getattr(cls, name, None))
    ]
    if not callable(getattr(_FitLoop, "_load_combined_loader_states", None)):
        missing.append("lightning.pytorch.loops.fit_loop._FitLoop._load_combined_loader_states")
    try:
        joblib_execute_job()
    except ImportError:
        missing.append("hydra_plugins.hydra_joblib_launcher._core.execute_job")
    try:
        compile_errors()
    except ImportError:
        missing.append("torch._dynamo.exc.TorchDynamoException")
    from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and rarely needed

    if not callable(getattr(SummaryWriter, "_get_file_writer", None)):
        missing.append("torch.utils.tensorboard.SummaryWriter._get_file_writer")
    if not isinstance(getattr(torch.zeros(1), "_version", None), int):
        missing.append("torch.Tensor._version")
    fused = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    if not hasattr(fused, "_step_supports_amp_scaling"):
        missing.append("torch.optim.Optimizer._step_supports_amp_scaling")
    distributed = importlib.import_module("lightning.pytorch.overrides.distributed")
    if not callable(getattr(distributed, "_sync_module_states", None)):
        missing.append("lightning.pytorch.overrides.distributed._sync_module_states")
    return missing

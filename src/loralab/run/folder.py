"""One run folder, one run: a fresh run never starts in the folder of an earlier one.

Pointing `hydra.run.dir` at a used folder used to replace the earlier run's summary.json,
best.ckpt/last.ckpt and adapter.safetensors, and mix both runs in one TensorBoard log. Now
a run that starts fresh (no `ckpt_path`) in a folder holding an earlier run's results
refuses, naming `ckpt_path=last` (to continue that run) and a new folder (to start another).
A failed run that left only its summary.json (it failed before training) is no result: its
folder may be reused.

The check runs twice: at the start of training (every run, sweep jobs included), and as a
Hydra callback (`GuardRunFolder`) before Hydra writes anything into a single run's folder,
together with the checks of a resume (the checkpoint is readable and was trained with this
config). A refused run then leaves the folder exactly as it was, the earlier run's .hydra/
and log included. Processes of rank > 0 (DDP) share rank 0's folder and skip it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from loralab.errors import ConfigError, UserError
from loralab.io import read_json
from loralab.run.cli import exit_with
from loralab.run.resume import check_resume_config, resolve_ckpt_path
from loralab.run.summary import ADAPTER_FILE, COMPLETED, SUMMARY_FILE

# what a run leaves in its folder besides its summary: checkpoints, adapter, logger output
RESULTS = ("checkpoints", ADAPTER_FILE, "tensorboard", "csv")


def earlier_results(folder: str | Path) -> list[str]:
    """The results of an earlier run in `folder` (empty: nothing a new run would replace)."""
    folder = Path(folder)
    found = []
    summary = folder / SUMMARY_FILE
    if summary.is_file():
        try:
            completed = read_json(summary).get("status") == COMPLETED
        except (OSError, ValueError, AttributeError):
            completed = True  # unreadable: keep it, whatever it is
        if completed:
            found.append(SUMMARY_FILE)
    for name in RESULTS:
        path = folder / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name + "/" * path.is_dir())
    return found


def check_fresh_folder(folder: str | Path, ckpt_path: Any, key: str = "hydra.run.dir") -> None:
    """Refuse to start a fresh run in a folder that holds an earlier run's results."""
    if ckpt_path or getattr(rank_zero_only, "rank", 0) != 0:
        return  # resuming (resume.py checks the checkpoint), or a DDP rank > 0
    found = earlier_results(folder)
    if found:
        raise ConfigError(
            f"{key}: {folder} holds an earlier run ({', '.join(found)}), which a fresh run "
            "would overwrite; resume that run with ckpt_path=last, or start this one in a new "
            f"folder (leave {key} unset or point it at a new path)."
        )


class GuardRunFolder(Callback):
    """Hydra callback: refuse a fresh run in a used folder, or a resume that can't work,
    before Hydra writes .hydra/ and the log into a single run's folder."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        folder = OmegaConf.select(config, "hydra.run.dir", default=None)
        if folder is None or getattr(rank_zero_only, "rank", 0) != 0:
            return
        ckpt_path = OmegaConf.select(config, "ckpt_path", default=None)
        try:
            check_fresh_folder(folder, ckpt_path)
            resolved = resolve_ckpt_path(ckpt_path, folder)
            if resolved:
                check_resume_config(resolved, config)
        except UserError as error:
            exit_with(error)

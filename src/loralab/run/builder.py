"""Build a run from its config, and load a run back from one of its checkpoints.

`build_run(cfg)` follows the data flow in one direction, each stage handing on one thing:
config -> datamodule -> backbone -> `apply_adapter(backbone)` -> task. Training builds its
run this way; evaluation, merging, generation and export rebuild a finished run with
`load_run(ckpt_path)`, which reads the checkpoint once, safely (`weights_only`: a pickle
payload inside a file never runs), rebuilds the run from the config stored inside it, and
puts the trained tensors and the data module's saved state (its tokenizer, its label names)
in place.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from loralab.callbacks.run_config import CONFIG_KEY
from loralab.errors import ConfigError, MissingFileError
from loralab.lora import AdapterReport, apply_adapter
from loralab.run import compat

log = logging.getLogger(__name__)

CHECKPOINT_HINT = (
    "pass a best.ckpt or last.ckpt from a run's checkpoints/ folder, e.g. "
    "ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt"
)


@dataclass
class Run:
    """The built stages of one run."""

    cfg: DictConfig
    datamodule: L.LightningDataModule
    task: L.LightningModule
    report: AdapterReport

    @property
    def model(self) -> torch.nn.Module:
        """The adapted backbone the task trains."""
        return self.task.model


def build_run(cfg: DictConfig) -> Run:
    """Data, adapted backbone and task module of a run, as its config describes them."""
    datamodule = hydra.utils.instantiate(cfg.data)
    backbone = hydra.utils.instantiate(cfg.model)
    check_same_source(datamodule, backbone)
    report = apply_adapter(backbone, cfg.adapter)
    task = hydra.utils.instantiate(cfg.task, model=backbone)
    return Run(cfg, datamodule, task, report)


def check_same_source(datamodule: L.LightningDataModule, backbone: torch.nn.Module) -> None:
    """A Hugging Face model must read the ids of its own tokenizer, not another model's."""
    model_source = getattr(backbone, "name_or_path", None)
    tokenizer = getattr(datamodule, "tokenizer", None)
    tokenizer_source = getattr(tokenizer, "name_or_path", None)
    if model_source and tokenizer is not None and not tokenizer_source:
        raise ConfigError(
            f"the data's ids come from its own {type(tokenizer).__name__} "
            f"({datamodule.vocab_size} ids), not from the tokenizer of "
            f"model.pretrained_model_name_or_path={model_source} "
            f"({getattr(backbone.config, 'vocab_size', '?')} ids), so the model would read "
            "each id as another token; use data tokenized with the model's own tokenizer "
            "(data.tokenizer), or a loralab backbone for this data (model=tiny_gpt for "
            "data=char_text)."
        )
    if not model_source or not tokenizer_source or _same(model_source, tokenizer_source):
        return
    raise ConfigError(
        f"data.tokenizer={tokenizer_source} is not the tokenizer of "
        f"model.pretrained_model_name_or_path={model_source}, so the model would read ids "
        f"another tokenizer assigned; set data.tokenizer={model_source}."
    )


def _same(a: str, b: str) -> bool:
    """Two hub ids or folders that name the same source."""
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """A checkpoint's contents, read with `weights_only=True`; bad files fail in one sentence.

    `weights_only` unpickles tensors and plain containers only: a crafted checkpoint whose
    pickle would run code is refused before anything in it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{key}: no checkpoint at {path}; {CHECKPOINT_HINT}.")
    try:
        # mmap: tensors are paged in when used, so a multi-GB checkpoint costs little to open
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0][:120]
        raise ConfigError(
            f"{key}: {path} holds objects other than tensors and plain values ({first}), and "
            "loralab never unpickles those since a pickle can run code; pass a checkpoint "
            "written by `python -m loralab.train`."
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error)
        raise ConfigError(
            f"{key}: {path} is not a readable PyTorch checkpoint (truncated or corrupt: "
            f"{first}); {CHECKPOINT_HINT}."
        ) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"{key}: {path} holds a {type(checkpoint).__name__}, not a training checkpoint; "
            f"{CHECKPOINT_HINT}."
        )
    return checkpoint


def run_config_of(
    checkpoint: dict[str, Any], path: str | Path, key: str = "ckpt_path"
) -> DictConfig:
    """The resolved training config a loralab checkpoint carries."""
    if CONFIG_KEY not in checkpoint:
        raise ConfigError(
            f"{key}: {path} holds no loralab run config; pass a checkpoint written by "
            "`python -m loralab.train`."
        )
    return OmegaConf.create(checkpoint[CONFIG_KEY])


@dataclass
class LoadedRun(Run):
    """A finished run rebuilt from one of its checkpoints, trained tensors in place."""

    checkpoint: dict[str, Any] | None = None
    ckpt_path: Path | None = None


def load_run(ckpt_path: str | Path, key: str = "ckpt_path") -> LoadedRun:
    """Read a checkpoint once and rebuild its run with the trained tensors loaded."""
    checkpoint = read_checkpoint(ckpt_path, key)
    cfg = run_config_of(checkpoint, ckpt_path, key)
    run = build_run(cfg)
    restore_trained_state(run, checkpoint)
    log.info("loaded the run of %s", ckpt_path)
    return LoadedRun(run.cfg, run.datamodule, run.task, run.report, checkpoint, Path(ckpt_path))


def restore_trained_state(run: Run, checkpoint: dict[str, Any]) -> None:
    """The checkpoint's tensors into the task (frozen ones filled in), its data state into data."""
    run.task.on_load_checkpoint(checkpoint)
    run.task.load_state_dict(checkpoint["state_dict"])
    state = checkpoint.get(compat.datamodule_state_key(run.datamodule))
    if state is not None:
        run.datamodule.load_state_dict(state)

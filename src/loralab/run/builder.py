"""Build a run from its config, and load a run back from one of its checkpoints.

`build_run(cfg)` follows the data flow in one direction, each stage handing on one thing:
config -> datamodule -> backbone -> `apply_adapter(backbone)` -> task. On the way it takes
the identity of the bare backbone (`BaseIdentity`: a content hash plus the shapes), which
LoRA checkpoints and adapter files record. Training builds its run this way; evaluation,
merging, generation and export rebuild a finished run with `load_run(ckpt_path)`, which
reads the checkpoint once, safely (`weights_only`: a pickle payload inside a file never
runs), rebuilds the run from the config stored inside it, refuses a base other than the one
the run trained on, and puts the trained tensors and the data module's saved state (its
tokenizer, its label names) in place.
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

from loralab import compat
from loralab.errors import ConfigError, MissingFileError
from loralab.keys import BASE_KEY, CONFIG_KEY
from loralab.lora import AdapterReport, apply_adapter
from loralab.lora.identity import BaseIdentity, base_identity, check_same_base
from loralab.lora.variants import FULL
from loralab.run.checks import check_run_config

log = logging.getLogger(__name__)

# the first bytes of a zip archive, which torch.save writes
ZIP_MAGIC = b"PK\x03\x04"
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
    # the bare backbone's identity less what the adapter trains in full; None: full fine-tuning
    base: BaseIdentity | None = None

    @property
    def model(self) -> torch.nn.Module:
        """The adapted backbone the task trains."""
        return self.task.model


def build_run(cfg: DictConfig) -> Run:
    """Data, adapted backbone and task module of a run, as its config describes them."""
    check_run_config(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    backbone = hydra.utils.instantiate(cfg.model)
    check_same_source(datamodule, backbone)
    # the fingerprint of the bare base, before the adapter changes anything (full fine-tuning
    # keeps every weight in its checkpoint: no base to identify)
    bare = None if cfg.adapter.get("name") == FULL else base_identity(backbone)
    report = apply_adapter(backbone, cfg.adapter)
    task = hydra.utils.instantiate(cfg.task, model=backbone)
    base = bare.without(report.trainable_modules) if bare is not None else None
    return Run(cfg, datamodule, task, report, base)


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
    if _is_safetensors(path):
        raise ConfigError(
            f"{key}: {path} is a safetensors file (a backbone or an adapter), not a training "
            f"checkpoint; {CHECKPOINT_HINT}."
        )
    try:
        # mmap: tensors are paged in when used, so a multi-GB checkpoint costs little to open
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise unreadable(path, key, error) from None
        raise ConfigError(
            f"{key}: {path} holds {_refused_object(error)}, which loralab never unpickles "
            "since a pickle can run any code; pass a checkpoint written by "
            "`python -m loralab.train`."
        ) from None
    except Exception as error:  # noqa: BLE001 - whatever the parser trips on, the file is bad
        raise unreadable(path, key, error) from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"{key}: {path} holds a {type(checkpoint).__name__}, not a training checkpoint; "
            f"{CHECKPOINT_HINT}."
        )
    return checkpoint


def unreadable(path: Path, key: str, error: BaseException) -> ConfigError:
    """The sentence for a truncated or damaged checkpoint, or a file that is none at all."""
    with path.open("rb") as f:
        head = f.read(4)
    if head == ZIP_MAGIC:  # torch.save writes a zip archive
        what = f"is a damaged or truncated checkpoint ({first_sentence(error)})"
    else:
        what = f"is not a PyTorch checkpoint (it starts with {head!r})"
    return ConfigError(f"{key}: {path} {what}; {CHECKPOINT_HINT}.")


def first_sentence(error: BaseException, limit: int = 120) -> str:
    """The first sentence of an error's message (libraries append paragraphs of advice)."""
    lines = str(error).strip().splitlines()
    sentence = lines[0].split(". ")[0].rstrip(".") if lines else type(error).__name__
    return sentence if len(sentence) <= limit else sentence[: limit - 3] + "..."


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: 8 bytes of header length, then a JSON header starting with '{'."""
    with path.open("rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and path.suffix != ".ckpt"


def _refused_object(error: BaseException) -> str:
    """What `weights_only` refused, e.g. "the global builtins.open" (torch names it)."""
    for line in str(error).splitlines():
        if "Unsupported global: GLOBAL " in line:
            name = line.split("GLOBAL ", 1)[1].split()[0].strip(".")
            return f"objects other than tensors and plain values (the global {name})"
    return "objects other than tensors and plain values"


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


def load_run(
    ckpt_path: str | Path, key: str = "ckpt_path", allow_other_base: bool = False
) -> LoadedRun:
    """Read a checkpoint once and rebuild its run with the trained tensors loaded.

    The run is rebuilt under the seed it trained with (a randomly initialised base comes out
    the same), and an adapter checkpoint whose base has changed since (a re-pretrained
    `model.checkpoint`) is refused unless `allow_other_base`.
    """
    checkpoint = read_checkpoint(ckpt_path, key)
    cfg = run_config_of(checkpoint, ckpt_path, key)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    run = build_run(cfg)
    if not allow_other_base:
        base_path = OmegaConf.select(cfg, "model.checkpoint", default=None)
        source = f"{key}: {ckpt_path}" + (f" (base model.checkpoint={base_path})" * bool(base_path))
        check_same_base(checkpoint.get(BASE_KEY), run.base, source, "allow_other_base=true")
    restore_trained_state(run, checkpoint, f"{key}: {ckpt_path}")
    log.info("loaded the run of %s", ckpt_path)
    return LoadedRun(
        run.cfg, run.datamodule, run.task, run.report, run.base, checkpoint, Path(ckpt_path)
    )


def restore_trained_state(run: Run, checkpoint: dict[str, Any], source: str = "ckpt_path") -> None:
    """The checkpoint's tensors into the task (frozen ones filled in), its data state into data."""
    run.task.on_load_checkpoint(checkpoint)
    try:
        run.task.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as error:
        raise ConfigError(
            f"{source}: its tensors do not fit the model rebuilt from its own config "
            f"({first_sentence(error)}); "
            "pass a checkpoint written by `python -m loralab.train` for this model."
        ) from None
    state = checkpoint.get(compat.datamodule_state_key(run.datamodule))
    if state is not None:
        run.datamodule.load_state_dict(state)

"""Resuming a run: which checkpoint `ckpt_path` means, and whether it fits this run's config.

A run folder is the Hydra output dir of one run (`logs/train/runs/<time>/`, or a sweep's
`.../multiruns/<time>/<n>/`); its checkpoints live in `<run folder>/checkpoints/`.
`ckpt_path=last` means the newest `last*.ckpt` of *this* run's folder, so a killed run is
resumed into its own folder by pointing Hydra there:

    python -m loralab.train <the same overrides> ckpt_path=last hydra.run.dir=<run folder>

A checkpoint path from elsewhere (`ckpt_path=.../last.ckpt`) resumes into a new folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from loralab.errors import ConfigError, MissingFileError
from loralab.io import to_plain
from loralab.keys import CONFIG_KEY
from loralab.run.builder import read_checkpoint

# config groups that decide what is trained; resuming under other values would continue a
# different experiment (the trainer group may change, e.g. more epochs or another machine)
MUST_MATCH = ("data", "model", "adapter", "task", "seed")


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint file `ckpt_path` names: `last` = the newest last.ckpt of the run folder."""
    if not ckpt_path:
        return None
    if str(ckpt_path) == "last":
        folder = Path(output_dir) / "checkpoints"
        found = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise MissingFileError(
                f"ckpt_path=last: there is no last.ckpt in {folder}; point hydra.run.dir at the "
                "folder of the run to resume (ckpt_path=last hydra.run.dir=logs/train/runs/<time>) "
                "or pass the checkpoint itself (ckpt_path=<run folder>/checkpoints/last.ckpt)."
            )
        return str(found[-1])
    path = Path(ckpt_path)
    if not path.is_file():
        raise MissingFileError(
            f"ckpt_path: no checkpoint at {path}; pass a last.ckpt from a run's checkpoints/ "
            "folder, or ckpt_path=last with hydra.run.dir=<that run's folder>."
        )
    return str(path)


def first_difference(saved: Any, current: Any, key: str = "") -> str | None:
    """The dotted key of the first value that differs between two plain configs."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for name in sorted(saved.keys() | current.keys()):
            found = first_difference(
                saved.get(name), current.get(name), f"{key}.{name}" if key else name
            )
            if found:
                return found
        return None
    return None if saved == current else key


def check_resume_config(ckpt_path: str, cfg: DictConfig) -> None:
    """Refuse to resume a checkpoint under a config that trains something else."""
    checkpoint = read_checkpoint(ckpt_path)
    saved = checkpoint.get(CONFIG_KEY)
    if saved is None:
        return  # not written by loralab.train: Lightning's own loading checks the tensors
    # only the groups compared: the rest may hold interpolations (${hydra:...}) that resolve
    # only once Hydra has started the job, and this check also runs before (run.folder)
    current = {group: to_plain(cfg.get(group)) for group in MUST_MATCH}
    for group in MUST_MATCH:
        key = first_difference(saved.get(group), current.get(group), group)
        if key:
            raise ConfigError(
                f"ckpt_path: {ckpt_path} was trained with a different {key} "
                f"({_value(saved, key)!r}, now {_value(current, key)!r}); resume with the "
                f"overrides of the original run, e.g. {key}={_value(saved, key)}."
            )


def _value(config: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint `trainer.fit` resumes from (None: a fresh run), checked against `cfg`."""
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
    if ckpt_path:
        check_resume_config(ckpt_path, cfg)
    return ckpt_path

"""Pretrained backbone files: `make pretrain` saves one, every fine-tuning run loads it.

A backbone file is a safetensors copy of `model.state_dict()` with the pretraining run's
settings as JSON metadata, so a reader can tell which `model.*` config it needs. Adapters
trained on a backbone file are only valid on exactly those weights, so an existing file is
never replaced unless the run says `overwrite=true` (`check_backbone_target`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from loralab.errors import BackboneCheckpointError, MissingFileError
from loralab.io import read_safetensors_metadata, save_safetensors

log = logging.getLogger(__name__)

# the backbone files the Makefile writes, and the target that writes each
MAKE_TARGETS = {
    "tiny_encoder.safetensors": "make pretrain",
    "tiny_gpt.safetensors": "make pretrain-charlm",
}


def remake_advice(path: str | os.PathLike) -> str | None:
    """`make pretrain` (or -charlm) for a file the Makefile writes; None for the user's own."""
    path = Path(path)
    target = MAKE_TARGETS.get(path.name)
    return f"`{target}`" if target and path.parent.name == "checkpoints" else None


def same_settings(path: str | os.PathLike) -> str:
    """The fix for a backbone file that does not fit the model built from the config."""
    fix = "build the model with the same model.* settings as the run that saved the file"
    remake = remake_advice(path)
    return f"{fix}, or re-run {remake}" if remake else f"{fix}, or point model.checkpoint elsewhere"


def check_backbone_target(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to replace an existing backbone file unless `overwrite`: adapters trained on it
    would silently compute something else on the new weights."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BackboneCheckpointError(
            f"save_backbone: {path} exists already, and adapters trained on it are only valid "
            "on those weights; pass overwrite=true to replace it (make pretrain "
            "ARGS=overwrite=true), or save_backbone=<a new path>."
        )


def save_backbone(
    model: nn.Module, path: str | os.PathLike, metadata: Mapping | None = None
) -> int:
    """Write the model's weights atomically (a crash never leaves half a file); return bytes."""
    # clone: safetensors refuses tensors that share memory (e.g. tied embeddings)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save_safetensors(path, tensors, metadata)


def read_metadata(path: str | os.PathLike, key: str = "model.checkpoint") -> dict[str, Any]:
    """The metadata a backbone file was saved with (e.g. the pretraining `model` config)."""
    try:
        return read_safetensors_metadata(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise BackboneCheckpointError(
            f"{key}: {path} is not a readable safetensors file ({error}); pass a backbone "
            "file written by `python -m loralab.train` (save_backbone) or `python -m "
            "loralab.merge`."
        ) from None


def load_backbone(model: nn.Module, path: str | os.PathLike, skip: Sequence[str] = ()) -> nn.Module:
    """Load a backbone file into `model`, leaving weights whose name starts with a `skip`
    prefix (e.g. a new task's `classifier`) as initialised."""
    path = Path(path)
    remake = remake_advice(path)
    if not path.is_file():
        fix = f"run {remake} first" if remake else "point model.checkpoint at an existing file"
        raise MissingFileError(
            f"model.checkpoint: no pretrained backbone at {path}; {fix} "
            "(or set model.checkpoint=null to start from random weights)."
        )
    try:
        saved = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        fix = f"re-run {remake}" if remake else "pass a file that `save_backbone` wrote"
        raise BackboneCheckpointError(
            f"model.checkpoint: {path} is not a readable safetensors file ({error}); {fix}."
        ) from None
    prefixes = tuple(skip)
    state = model.state_dict()
    wanted = {k: v for k, v in state.items() if not _under(k, prefixes)}
    saved = {k: v for k, v in saved.items() if not _under(k, prefixes)}
    if prefixes and len(wanted) == len(state):
        log.warning("model.skip=%s matches no weight of the model", list(prefixes))
    check_compatible(wanted, saved, path)
    model.load_state_dict(saved, strict=False)  # exactly the non-skipped keys, checked above
    return model


def _under(key: str, modules: tuple[str, ...]) -> bool:
    """Whether a weight belongs to one of `modules` (so `layers.1` does not take `layers.10`)."""
    return any(key == m or key.startswith(m + ".") for m in modules)


def check_compatible(wanted: Mapping[str, Tensor], saved: Mapping[str, Tensor], path: Path) -> None:
    """Fail in one sentence on the first missing, unexpected or mis-shaped weight."""
    problems = []
    for key in sorted(wanted.keys() - saved.keys()):
        problems.append(f"weight {key!r} of shape {shape(wanted[key])} is missing from {path}")
    for key in sorted(saved.keys() - wanted.keys()):
        problems.append(f"{path} has weight {key!r} of shape {shape(saved[key])} the model lacks")
    for key in sorted(wanted.keys() & saved.keys()):
        if wanted[key].shape != saved[key].shape:
            problems.append(
                f"weight {key!r} has shape {shape(saved[key])} in {path} "
                f"but {shape(wanted[key])} in the model"
            )
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise BackboneCheckpointError(
            f"model.checkpoint: {problems[0]}{more}; {same_settings(path)}."
        )


def shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def build_backbone(
    net: nn.Module, checkpoint: str | os.PathLike | None = None, skip: Sequence[str] = ()
) -> nn.Module:
    """Hydra `_target_` of the model group: the built `net`, with pretrained weights if given."""
    if not checkpoint:
        return net
    log.info("loading the pretrained backbone %s (skipping %s)", checkpoint, list(skip))
    return load_backbone(net, checkpoint, skip)

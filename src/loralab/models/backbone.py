"""Pretrained backbone files: `make pretrain` saves one, every fine-tuning run loads it.

A backbone file is a safetensors copy of `model.state_dict()` with the pretraining run's
settings as JSON metadata, so a reader can tell which `model.*` config it needs.
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

SAME_SETTINGS = (
    "build the model with the same model.* settings as the pretraining run, "
    "or re-run `make pretrain`"
)


def save_backbone(
    model: nn.Module, path: str | os.PathLike, metadata: Mapping | None = None
) -> int:
    """Write the model's weights atomically (a crash never leaves half a file); return bytes."""
    # clone: safetensors refuses tensors that share memory (e.g. tied embeddings)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save_safetensors(path, tensors, metadata)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata a backbone file was saved with (e.g. the pretraining `model` config)."""
    return read_safetensors_metadata(path)


def load_backbone(model: nn.Module, path: str | os.PathLike, skip: Sequence[str] = ()) -> nn.Module:
    """Load a backbone file into `model`, leaving weights whose name starts with a `skip`
    prefix (e.g. a new task's `classifier`) as initialised."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"model.checkpoint: no pretrained backbone at {path}; run `make pretrain` first "
            "(or set model.checkpoint=null to start from random weights)."
        )
    try:
        saved = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise BackboneCheckpointError(
            f"model.checkpoint: {path} is not a readable safetensors file ({error}); "
            "re-run `make pretrain`."
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
        raise BackboneCheckpointError(f"model.checkpoint: {problems[0]}{more}; {SAME_SETTINGS}.")


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

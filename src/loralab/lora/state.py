"""Save and load only what training changed, so an adapter is a small file beside its base.

A LoRA run changes the A/B matrices and the modules trained in full (e.g. a new head);
everything else is the base model, which the researcher already has. The file is
safetensors (no pickle: safe to load from anyone) with the run's settings as JSON metadata,
including the identity of the base it was trained on (`BASE_IDENTITY_KEY`), so that loading
it onto another base is refused instead of silently computing something else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from loralab.errors import AdapterConfigError, MissingFileError
from loralab.io import METADATA_KEY, save_safetensors
from loralab.lora.identity import BaseIdentity, check_same_base
from loralab.lora.layer import LoRALayer

# the metadata key of the base's identity (`BaseIdentity.to_dict()`)
BASE_IDENTITY_KEY = "base_identity"

SAME_BASE_FIX = (
    "the adapter was trained on a base of another shape; "
    "build the model with the same model.* settings as the run that saved it"
)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter that trains, and every LoRA layer's own tensors even where a variant
    froze one (LoRA-FA's A, kept at its random init), copied to CPU; for full fine-tuning,
    the whole model."""
    layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
    own = {id(t) for layer in layers for t in layer.adapter_parameters().values()}
    return {
        # copy=True: a snapshot that later training steps do not change under the caller
        name: param.detach().to("cpu", copy=True).contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad or id(param) in own
    }


def save_adapter(
    path: str | Path,
    model: nn.Module,
    metadata: Mapping[str, Any] | None = None,
    base: BaseIdentity | None = None,
) -> int:
    """Write the adapter file atomically and return its size in bytes.

    The tensors go to a temporary file in the same folder first and then replace `path` in
    one step, so a run killed mid-write never leaves a truncated adapter behind. `base`, the
    identity of the bare base the adapter was trained on, is recorded for `load_adapter`.
    """
    metadata = dict(metadata or {})
    if base is not None:
        metadata[BASE_IDENTITY_KEY] = base.to_dict()
    return save_safetensors(path, adapter_state_dict(model), metadata)


def read_adapter_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata dict saved with the adapter, without loading its tensors."""
    return _read(path, with_tensors=False)[1]


def load_adapter(
    path: str | Path,
    model: nn.Module,
    strict: bool = True,
    base: BaseIdentity | None = None,
    allow_other_base: bool = False,
) -> dict[str, Any]:
    """Load adapter tensors into a model prepared with the same `apply_adapter` config.

    Every key and shape is checked before the first copy, so a mismatch leaves the model as
    it was. With `strict`, each trainable tensor of the model must be in the file too. With
    `base` (the identity of the bare base `model` was built on), a file trained on another
    base is refused unless `allow_other_base`. Returns the metadata saved with the adapter.
    """
    tensors, metadata = _read(path, with_tensors=True)
    if not allow_other_base:
        check_same_base(metadata.get(BASE_IDENTITY_KEY), base, f"adapter file {path}")
    load_adapter_tensors(model, tensors, path, strict)
    return metadata


def load_adapter_tensors(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str | Path, strict: bool = True
) -> None:
    """Copy named adapter tensors into the model's parameters, all checked before the first copy.

    `source` names where the tensors came from (a file or folder), for the error message.
    """
    params = dict(model.named_parameters())
    _check_keys_and_shapes(source, tensors, params, strict)

    # new A/B under a merged W would leave the old update folded in: unmerge, load, re-merge
    merged = [m for m in model.modules() if isinstance(m, LoRALayer) and m.merged]
    for layer in merged:
        layer.unmerge()
    with torch.no_grad():
        for key, tensor in tensors.items():
            params[key].copy_(tensor)
    for layer in merged:
        layer.merge()


def _check_keys_and_shapes(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    params: Mapping[str, nn.Parameter],
    strict: bool,
) -> None:
    for key, tensor in tensors.items():
        if key not in params:
            raise AdapterConfigError(
                f"adapter file {path} holds '{key}' (shape {tuple(tensor.shape)}), which the "
                "model lacks; build the model and apply the adapter with the same model.* and "
                "adapter.* settings as the run that saved it."
            )
        if tensor.shape != params[key].shape:
            raise AdapterConfigError(
                f"adapter tensor '{key}' has shape {tuple(tensor.shape)} in {path} but "
                f"{tuple(params[key].shape)} in the model; {SAME_BASE_FIX}."
            )
    if strict:
        missing = [key for key, p in params.items() if p.requires_grad and key not in tensors]
        if missing:
            raise AdapterConfigError(
                f"the model's trainable tensor '{missing[0]}' ({len(missing)} in all) is not "
                f"in adapter file {path}; apply the same adapter.* settings (targets, "
                "trainable) as the run that saved it, or load with strict=False."
            )


def _read(path: str | Path, with_tensors: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The file's tensors (if asked) and its loralab metadata, with one-sentence errors."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"adapter file {path} does not exist; pass the adapter.safetensors that a LoRA "
            "training run wrote into its run directory."
        )
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()} if with_tensors else {}
            header = f.metadata() or {}
        metadata = json.loads(header.get(METADATA_KEY, "{}"))
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterConfigError(
            f"adapter file {path} is not a readable safetensors file ({err}); "
            "pass the adapter.safetensors that a LoRA training run wrote."
        ) from None
    return tensors, metadata

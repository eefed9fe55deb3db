"""Files that are never half-written: atomic writes, JSON, and safetensors with loralab metadata.

A run can be killed at any moment (SIGKILL, out of memory, a preempted node). Every file
loralab writes therefore goes to a hidden temporary name in the same folder first and then
replaces its target in one `os.replace`, so a reader sees the old file or the new one, never
a truncated mix. A folder (a `from_pretrained` folder, a converted model) is written the same
way: into a hidden sibling folder that is renamed into place whole (`atomic_dir`). A leaf
module: it imports nothing of loralab.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

# the safetensors header key holding loralab's JSON metadata (settings, provenance)
METADATA_KEY = "loralab"
# the mark of a folder being written: .<folder>.partial-<random>-<pid>
PARTIAL_MARK = ".partial-"


def temporary_path(path: str | os.PathLike) -> Path:
    """A hidden, unique name beside `path`: os.replace is atomic only within one file system."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Write to the yielded temporary path; on success it replaces `path`, on failure it goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(folder: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Write a folder's files into the yielded hidden sibling folder; when the block ends it
    takes `folder`'s place whole, and on failure it goes, so no reader sees half a folder.

    `replace=False` never removes an existing `folder`: if one appeared while this copy was
    written (a concurrent writer won the race), this copy is dropped and FileExistsError
    raised. Leftovers of writers that were killed (their process is gone) are removed first.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_partials(folder)
    tmp = folder.with_name(f".{folder.name}{PARTIAL_MARK}{secrets.token_hex(3)}-{os.getpid()}")
    tmp.mkdir()
    try:
        yield tmp
        if replace:
            if folder.is_dir():  # the caller allowed replacing it (overwrite=true)
                shutil.rmtree(folder)
            elif folder.exists():
                folder.unlink()
            os.replace(tmp, folder)
        else:
            try:
                tmp.rename(folder)  # atomic: the folder is there whole or not at all
            except OSError as error:
                if folder.exists():
                    raise FileExistsError(f"{folder} was written meanwhile") from error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_dead_partials(folder: Path) -> None:
    """Folders that killed writers of `folder` left (their process is gone); live ones stay."""
    for partial in folder.parent.glob(f".{folder.name}{PARTIAL_MARK}*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (sorted keys, indented); values JSON lacks are written as str."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_size(path: str | os.PathLike | None) -> int | None:
    """Bytes of a file, or None when there is no such file."""
    return os.path.getsize(path) if path and os.path.isfile(path) else None


def to_plain(value: Any) -> Any:
    """A config (an OmegaConf DictConfig/ListConfig, or any mapping) as plain dicts and lists,
    interpolations resolved, so it saves as JSON and loads back with `weights_only=True`."""
    from omegaconf import Container, OmegaConf

    if isinstance(value, Container):
        # OmegaConf's own walk keeps a missing value (???) as it is instead of raising
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [to_plain(v) for v in value]
    return value


def save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
) -> int:
    """Write tensors atomically with `metadata` as JSON in the header; returns the file's bytes.

    "format": "pt" is what Hugging Face loaders expect; safetensors headers hold strings only,
    so loralab's metadata is one JSON string under `METADATA_KEY`.
    """
    from safetensors.torch import save_file

    header = {"format": "pt", METADATA_KEY: json.dumps(to_plain(metadata or {}), default=str)}
    with atomic_path(path) as tmp:
        save_file(dict(tensors), tmp, metadata=header)
    return Path(path).stat().st_size


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The loralab metadata of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get(METADATA_KEY, "{}"))

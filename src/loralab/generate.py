"""`python -m loralab.generate ckpt_path=... prompt=...`: text from a language model.

`ckpt_path` may be
  * a backbone file (`.safetensors`) written by pretraining (`save_backbone`, e.g.
    checkpoints/tiny_gpt.safetensors) or by `python -m loralab.merge` (base + folded adapter):
    the network is rebuilt from the `model` config stored in its metadata;
  * a training checkpoint (`.ckpt`) of `python -m loralab.train`: the run (base + adapter)
    is rebuilt from the config stored inside it, as `loralab.eval` does.

The vocabulary comes from `tokenizer=path` if given, else from the checkpoint: a training
checkpoint carries its run's tokenizer; a backbone file has it beside itself
(`x.tokenizer.json` next to `x.safetensors`) or beside the base it was merged from.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from torch import nn

from loralab.data.tokenizer import CharTokenizer, tokenizer_path_for
from loralab.errors import ConfigError, MissingFileError
from loralab.io import write_json
from loralab.models import load_backbone, read_metadata
from loralab.models.sampling import sample_ids
from loralab.run.builder import load_run
from loralab.run.cli import hydra_entry

log = logging.getLogger("loralab.generate")
OUTPUT_FILE = "generated.json"


def load_backbone_file(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """A plain backbone (pretrained or merged) from its file; returns it and the metadata."""
    metadata = read_metadata(path, key="ckpt_path")
    net_cfg = (metadata.get("model") or {}).get("net")
    if not net_cfg:
        raise ConfigError(
            f"ckpt_path: {path} stores no model config in its metadata; pass a backbone file "
            "written by `python -m loralab.train` (save_backbone) or `python -m loralab.merge`."
        )
    return load_backbone(hydra.utils.instantiate(net_cfg), path), metadata


def backbone_tokenizer(path: Path, metadata: dict[str, Any]) -> CharTokenizer:
    """The tokenizer beside a backbone file, or beside the base a merged file came from."""
    base = (metadata.get("model") or {}).get("checkpoint")
    candidates = [tokenizer_path_for(path)] + ([tokenizer_path_for(base)] if base else [])
    for candidate in candidates:
        if candidate.is_file():
            return CharTokenizer.load(candidate)
    raise MissingFileError(
        f"tokenizer: no tokenizer file found for {path} (looked at "
        f"{', '.join(map(str, candidates))}); pass tokenizer=path/to/x.tokenizer.json."
    )


def load_for_generation(
    ckpt_path: str | Path, tokenizer: str | None = None, allow_other_base: bool = False
) -> tuple[nn.Module, CharTokenizer]:
    """The model a checkpoint holds, in eval mode, and the tokenizer to read and write text."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise MissingFileError(
            f"ckpt_path: no file at {path}; pass a backbone .safetensors file (e.g. "
            "checkpoints/tiny_gpt.safetensors) or a run's checkpoints/best.ckpt."
        )
    if path.suffix == ".safetensors":
        model, metadata = load_backbone_file(path)
        found = None if tokenizer else backbone_tokenizer(path, metadata)
    else:
        # the data module's saved state holds the run's tokenizer
        run = load_run(path, allow_other_base=allow_other_base)
        model, found = run.model, run.datamodule.tokenizer
    chosen = CharTokenizer.load(tokenizer) if tokenizer else found
    if not isinstance(chosen, CharTokenizer):
        raise ConfigError(
            f"ckpt_path: the run of {path} has no character tokenizer, so it is not a language "
            "model run; pass a checkpoint of a data=char_text run, or tokenizer=path."
        )
    return model.eval(), chosen


def generate(cfg: DictConfig) -> dict[str, float]:
    """Sample one continuation of the prompt; print it and save it in generated.json."""
    model, tokenizer = load_for_generation(
        cfg.ckpt_path, cfg.get("tokenizer"), cfg.allow_other_base
    )
    prompt = str(cfg.prompt).replace("\\n", "\n")  # a typed `\n` is a line break
    if not prompt:
        raise ConfigError("prompt is empty; pass at least one character, e.g. prompt='\\n'.")
    new_ids = sample_ids(
        model,
        tokenizer.encode(prompt),
        cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        seed=cfg.seed,
    )
    text = prompt + tokenizer.decode(new_ids)
    print(text)
    write_json(
        Path(cfg.paths.output_dir) / OUTPUT_FILE,
        {
            "ckpt_path": str(cfg.ckpt_path),
            "prompt": prompt,
            "seed": cfg.seed,
            "temperature": cfg.temperature,
            "top_k": cfg.top_k,
            "text": text,
        },
    )
    return {"new_tokens": float(len(new_ids))}


main = hydra_entry("generate")(generate)

if __name__ == "__main__":
    main()

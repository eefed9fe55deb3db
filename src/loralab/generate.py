"""`python -m loralab.generate ckpt_path=... prompt=...`: text from a language model.

`ckpt_path` may be
  * a backbone file (`.safetensors`) written by pretraining (`save_backbone`, e.g.
    checkpoints/tiny_gpt.safetensors) or by `python -m loralab.merge` (base + folded adapter):
    the network is rebuilt from the `model` config stored in its metadata;
  * a training checkpoint (`.ckpt`) of `python -m loralab.train`: the run (base + adapter)
    is rebuilt from the config stored inside it, as `loralab.eval` does;
  * a Hugging Face causal LM folder (written by save_pretrained, e.g.
    checkpoints/smollm2-135m-instruct): loaded with its own tokenizer.

The vocabulary comes from `tokenizer=path` if given, else from the checkpoint: a training
checkpoint carries its run's tokenizer; a backbone file has it beside itself
(`x.tokenizer.json` next to `x.safetensors`) or beside the base it was merged from.

A character model continues the prompt. A model with a Hugging Face tokenizer answers it:
the prompt becomes a user message formatted as its training formatted prompts (a run of
data=instruct: its chat template or plain template and its system prompt; a folder: the
tokenizer's chat template), generation stops at EOS or end of turn, and the answer is
printed. `chat=false` continues the raw prompt instead (the way data=lm_text runs are used).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from torch import nn

from loralab.data.char_tokenizer import CharTokenizer, tokenizer_path_for
from loralab.data.chat_format import ChatFormatter
from loralab.data.hf_tokenizer import load_tokenizer
from loralab.errors import ConfigError, MissingFileError
from loralab.io import write_json
from loralab.models import load_backbone, read_metadata
from loralab.models.generation import generate_batch
from loralab.models.hf import build_hf_model
from loralab.models.sampling import sample_ids
from loralab.run.builder import load_run
from loralab.run.cli import hydra_entry
from loralab.tasks import LanguageModelingTask

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


@dataclass
class TextModel:
    """A language model ready to write, the tokenizer it reads, and how its prompts look."""

    model: nn.Module
    tokenizer: Any  # a CharTokenizer or a Hugging Face tokenizer
    # how prompts become a conversation (a data=instruct run's own formatting, a folder's
    # chat template); None: the model continues the raw prompt (a data=lm_text run)
    formatter: ChatFormatter | None = None
    system_prompt: str | None = None


def load_text_model(
    ckpt_path: str | Path, tokenizer: str | None = None, allow_other_base: bool = False
) -> TextModel:
    """The model a checkpoint or folder holds, in eval mode, with its tokenizer."""
    path = Path(ckpt_path)
    if path.is_dir():
        source = str(path)
        found: Any = load_tokenizer(tokenizer or source)
        formatter = ChatFormatter(found) if found.chat_template else None
        return TextModel(build_hf_model(source, task="causal_lm").eval(), found, formatter)
    if not path.is_file():
        raise MissingFileError(
            f"ckpt_path: no file at {path}; pass a backbone .safetensors file (e.g. "
            "checkpoints/tiny_gpt.safetensors), a run's checkpoints/best.ckpt or a Hugging "
            "Face model folder."
        )
    if path.suffix == ".safetensors":
        model, metadata = load_backbone_file(path)
        found = None if tokenizer else backbone_tokenizer(path, metadata)
        return TextModel(model.eval(), CharTokenizer.load(tokenizer) if tokenizer else found)
    run = load_run(
        path, allow_other_base=allow_other_base
    )  # the data module's saved state holds the run's tokenizer
    found = run.datamodule.tokenizer
    if not isinstance(run.task, LanguageModelingTask) or found is None:
        raise ConfigError(
            f"ckpt_path: the run of {path} is not a language model run (task "
            f"{type(run.task).__name__}); pass a checkpoint of a task=language_modeling run."
        )
    if tokenizer:
        found = (
            CharTokenizer.load(tokenizer)
            if tokenizer.endswith(".json")
            else load_tokenizer(tokenizer)
        )
    return TextModel(
        run.model.eval(),
        found,
        getattr(run.datamodule, "formatter", None),
        run.cfg.data.get("system_prompt"),
    )


def load_for_generation(
    ckpt_path: str | Path, tokenizer: str | None = None, allow_other_base: bool = False
) -> tuple[nn.Module, Any]:
    """The model a checkpoint holds, in eval mode, and the tokenizer to read and write text."""
    loaded = load_text_model(ckpt_path, tokenizer, allow_other_base)
    return loaded.model, loaded.tokenizer


def continue_chars(loaded: TextModel, prompt: str, cfg: DictConfig) -> tuple[str, int]:
    """A character model's continuation: the prompt and what follows it."""
    new_ids = sample_ids(
        loaded.model,
        loaded.tokenizer.encode(prompt),
        cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        seed=cfg.seed,
    )
    return prompt + loaded.tokenizer.decode(new_ids), len(new_ids)


def answer_prompt(loaded: TextModel, prompt: str, cfg: DictConfig) -> tuple[str, int]:
    """A model with a Hugging Face tokenizer: its answer to the prompt as a user message,
    or the raw continuation of the prompt; generation stops at EOS or end of turn."""
    tokenizer, chat = loaded.tokenizer, cfg.get("chat")
    formatter = loaded.formatter if chat is None else None
    if chat:
        formatter = loaded.formatter or ChatFormatter(tokenizer)
    if formatter is None:  # a continuation, as data=lm_text trains
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        stop_ids: frozenset[int] = frozenset({tokenizer.eos_token_id})
    else:
        system = cfg.get("system_prompt") or loaded.system_prompt
        history = [{"role": "system", "content": system}] if system else []
        ids = formatter.prompt_ids([*history, {"role": "user", "content": prompt}])
        stop_ids = formatter.stop_ids
    new_ids = generate_batch(
        loaded.model,
        [ids],
        cfg.max_new_tokens,
        stop_ids,
        tokenizer.pad_token_id,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        seed=cfg.seed,
    )[0]
    answer = tokenizer.decode(new_ids, skip_special_tokens=True)
    return (answer if formatter is not None else prompt + answer), len(new_ids)


def generate(cfg: DictConfig) -> dict[str, float]:
    """Sample one continuation (or answer) of the prompt; print it and save it in generated.json."""
    loaded = load_text_model(cfg.ckpt_path, cfg.get("tokenizer"), cfg.allow_other_base)
    prompt = str(cfg.prompt).replace("\\n", "\n")  # a typed `\n` is a line break
    if not prompt:
        raise ConfigError("prompt is empty; pass at least one character, e.g. prompt='\\n'.")
    if isinstance(loaded.tokenizer, CharTokenizer):
        text, n_new = continue_chars(loaded, prompt, cfg)
    else:
        text, n_new = answer_prompt(loaded, prompt, cfg)
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
    return {"new_tokens": float(n_new)}


main = hydra_entry("generate")(generate)

if __name__ == "__main__":
    main()

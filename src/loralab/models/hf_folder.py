"""A Hugging Face backbone as a folder that `from_pretrained` and `pipeline` load as is.

A merged run must leave the loralab world: `config.json` (with `num_labels`, `id2label` and
`label2id` from the run's label names, which live in the checkpoint and nowhere else),
`model.safetensors` and the tokenizer files, so that
`AutoModelForSequenceClassification.from_pretrained(folder)` or
`transformers.pipeline("text-classification", model=folder)` needs no loralab code.
The folder is written beside its destination first and then moved in place, so a failed
write never leaves half a model behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from loralab.io import atomic_dir
from loralab.models.hf import HF_TASKS, label_config


def write_pretrained_folder(
    model: nn.Module,
    folder: str | os.PathLike,
    task: str,
    label_names: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> int:
    """Write `model` (plain: merged and unwrapped), its config and tokenizer; return bytes."""
    folder = Path(folder)
    config = model.config
    if task == "sequence_classification":
        for key, value in label_config(label_names, config.num_labels).items():
            setattr(config, key, value)
    else:
        config.use_cache = True  # training turned the cache off; generation wants it
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(tmp)
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def load_pretrained_folder(folder: str | os.PathLike, task: str) -> nn.Module:
    """The folder loaded by transformers alone (`AutoModelFor<Task>.from_pretrained`)."""
    import transformers

    auto = getattr(transformers, HF_TASKS[task].auto_class)
    return auto.from_pretrained(str(folder)).eval()

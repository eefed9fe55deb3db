"""The README.md an exported adapter folder carries: what it is and how to load it, in one page.

Whoever finds the folder (on disk or on the hub) learns its base, adapter settings, data and
test metrics, and gets a loading snippet to paste, with the keyword arguments its base needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from loralab.io import atomic_path

CARD_FILE = "README.md"
# PEFT's task_type -> the AutoPeftModel class that loads it
AUTO_CLASSES = {
    "SEQ_CLS": "AutoPeftModelForSequenceClassification",
    "CAUSAL_LM": "AutoPeftModelForCausalLM",
}
# the adapter settings a card states (those a run has)
ADAPTER_FIELDS = ("name", "rank", "alpha", "scaling", "init", "dropout", "targets", "quant")


def python_kwargs(kwargs: Mapping[str, Any]) -> str:
    """`k=v, ...` as Python source: id2label keeps its int keys (JSON would make them strings)."""
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def load_snippet(folder: str | Path, task_type: str | None, kwargs: Mapping[str, Any]) -> str:
    """The Python lines that load the folder with PEFT alone (None: loralab's import_peft)."""
    auto = AUTO_CLASSES.get(task_type or "")
    if auto is None:
        return (
            "from loralab.lora import import_peft\n"
            f"import_peft({str(folder)!r}, backbone)  # backbone: a fresh copy of the base"
        )
    arguments = ", ".join(filter(None, [repr(str(folder)), python_kwargs(kwargs)]))
    return (
        f"from peft import {auto}\nfrom transformers import AutoTokenizer\n"
        f"model = {auto}.from_pretrained({arguments})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})"
    )


def data_source(data: DictConfig) -> str:
    """The data a run trained on, in a few words: the dataset, file or bundled corpus."""
    kind = str(data.get("_target_", "?")).rpartition(".")[2]
    for key in ("dataset_name", "train_file", "corpus"):
        if data.get(key) is not None:
            return f"{kind} ({key}={data.get(key)})"
    return kind


def card_text(
    cfg: DictConfig,
    folder: str | Path,
    base: str | None,
    task_type: str | None,
    kwargs: Mapping[str, Any],
    metrics: Mapping[str, float],
) -> str:
    """The model card's markdown."""
    adapter = OmegaConf.to_container(cfg.adapter, resolve=True)
    settings = [
        f"- {'adapter' if key == 'name' else key}: {adapter[key]}"
        for key in ADAPTER_FIELDS
        if adapter.get(key) is not None
    ]
    scores = [f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items())]
    lines = [
        f"# {cfg.get('run_name') or 'loralab adapter'}",
        "",
        "A LoRA adapter trained with loralab, in the Hugging Face PEFT format.",
        "",
        f"- base: {base}",
        f"- task_type: {task_type}",
        f"- data: {data_source(cfg.data)}",
        *settings,
        "",
        "## Test metrics",
        "",
        *(["| metric | value |", "|---|---|", *scores] if scores else ["(none recorded)"]),
        "",
        "## Loading",
        "",
        "```python",
        load_snippet(folder, task_type, kwargs),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(folder: str | Path, text: str) -> Path:
    """README.md into the export folder."""
    path = Path(folder) / CARD_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path

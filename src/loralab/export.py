"""`python -m loralab.export ckpt_path=... output=<folder>`: a run's adapter as a PEFT folder.

The run is rebuilt from its checkpoint (read once, safely: `run.builder.load_run`) and its
adapter written with `export_peft`: `adapter_config.json` and `adapter_model.safetensors`.
For a Hugging Face backbone the config also says `task_type` (SEQ_CLS, CAUSAL_LM) and
`base_model_name_or_path` (the hub id or local folder the run used), and the tokenizer is
saved beside it, so PEFT alone loads it:

    from peft import AutoPeftModelForSequenceClassification
    model = AutoPeftModelForSequenceClassification.from_pretrained(output)

Keyword arguments the base's own config lacks (`num_labels` and the label names of the run,
a decoder's `pad_token_id`) are printed as Python (`id2label` with int keys, as transformers
wants them) and saved in export.json as `load_kwargs`. JSON turns those keys into strings, which
transformers keeps as they are when they come as keyword arguments (`pipeline` then fails on
`id2label[1]`), so read them back with `read_load_kwargs(<export.json>)`, which restores the
int keys; `load_code` there is the Python line. `base_model_name_or_path=<hub id>` records another
source of the same base (MiniLM's hub id instead of its folder in site-packages). A
README.md model card states the base, adapter, data and test metrics, with the snippet.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from loralab.errors import ConfigError
from loralab.io import write_json
from loralab.lora import export_peft
from loralab.models.hf import HF_TASKS, head_kwargs, is_hf_model
from loralab.run.builder import LoadedRun, load_run
from loralab.run.cli import hydra_entry
from loralab.run.model_card import card_text, load_snippet, write_card
from loralab.run.summary import SUMMARY_FILE, RunSummary

log = logging.getLogger("loralab.export")


def peft_target(run: LoadedRun, base: str | None = None) -> tuple[str | None, str | None]:
    """(base_model_name_or_path, task_type) of the run's base; `base` replaces the source."""
    model_cfg = run.cfg.model
    if is_hf_model(run.model):
        source = base or str(model_cfg.pretrained_model_name_or_path)
        return source, HF_TASKS[model_cfg.task].peft_task_type
    checkpoint = base or model_cfg.get("checkpoint")
    return (str(checkpoint) if checkpoint else None), None


def test_metrics(run: LoadedRun) -> dict[str, float]:
    """The test metrics of the run's summary.json, if its folder still holds one."""
    folder = OmegaConf.select(run.cfg, "paths.output_dir", default=None)
    if not folder or not (Path(folder) / SUMMARY_FILE).is_file():
        return {}
    metrics = RunSummary.read(folder).metrics
    return {k: v for k, v in metrics.items() if k.startswith("test/")}


def read_load_kwargs(export_json: str | Path) -> dict[str, Any]:
    """The `load_kwargs` of an export.json as transformers wants them: id2label's keys as ints."""
    kwargs = dict(json.loads(Path(export_json).read_text())["load_kwargs"])
    if "id2label" in kwargs:
        kwargs["id2label"] = {int(key): name for key, name in kwargs["id2label"].items()}
    return kwargs


def export(cfg: DictConfig) -> dict[str, float]:
    """Write the PEFT folder of a run; return the number of adapted layers."""
    output = Path(cfg.output)
    if output.exists() and any(output.iterdir()) and not cfg.overwrite:
        raise ConfigError(
            f"output: {output} exists already and is not empty; pass a new folder, or "
            "overwrite=true to replace its files."
        )
    run = load_run(cfg.ckpt_path)
    if not run.report.replaced:
        raise ConfigError(
            f"ckpt_path: {cfg.ckpt_path} is a run with adapter.name={run.report.method}, which "
            "has no adapter to export; export a LoRA run, or fold a run into its base with "
            "python -m loralab.merge."
        )
    base, task_type = peft_target(run, cfg.get("base_model_name_or_path"))
    export_peft(run.model, output, base_model_name_or_path=base, task_type=task_type)
    load_kwargs: dict[str, Any] = {}
    if task_type is not None:
        tokenizer = run.datamodule.tokenizer
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(output)
        if task_type == "SEQ_CLS":
            labels = getattr(run.datamodule, "label_names", None)
            load_kwargs = head_kwargs(run.model, base, labels)
    code = load_snippet(output, task_type, load_kwargs)
    write_card(output, card_text(run.cfg, output, base, task_type, load_kwargs, test_metrics(run)))
    print(
        f"exported {len(run.report.replaced)} adapter layers of {cfg.ckpt_path} to {output} "
        f"(task_type {task_type}, base {base}); load it with:\n{code}"
    )
    write_json(
        Path(cfg.paths.output_dir) / "export.json",
        {
            "ckpt_path": str(cfg.ckpt_path),
            "output": str(output),
            "task_type": task_type,
            "base_model_name_or_path": base,
            "load_kwargs": load_kwargs,
            "load_code": code,
        },
    )
    return {"adapted_layers": float(len(run.report.replaced))}


main = hydra_entry("export")(export)

if __name__ == "__main__":
    main()

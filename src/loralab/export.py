"""`python -m loralab.export ckpt_path=... output=<folder>`: a run's adapter as a PEFT folder.

The run is rebuilt from its checkpoint (read once, safely: `run.builder.load_run`) and its
adapter written with `export_peft`: `adapter_config.json` and `adapter_model.safetensors`.
For a Hugging Face backbone the config also says `task_type` (SEQ_CLS, CAUSAL_LM) and
`base_model_name_or_path` (the hub id or local folder the run used), and the tokenizer is
saved beside it, so PEFT alone loads it:

    from peft import AutoPeftModelForSequenceClassification
    model = AutoPeftModelForSequenceClassification.from_pretrained(output)

Keyword arguments the base's own config lacks (`num_labels` of a 3-class run, a decoder's
`pad_token_id`) are printed and saved in export.json as `load_kwargs`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from loralab.errors import ConfigError
from loralab.io import write_json
from loralab.lora import export_peft
from loralab.models.hf import HF_TASKS, head_kwargs, is_hf_model
from loralab.run.builder import LoadedRun, load_run
from loralab.run.cli import hydra_entry

log = logging.getLogger("loralab.export")


def peft_target(run: LoadedRun) -> tuple[str | None, str | None]:
    """(base_model_name_or_path, task_type) of the run's base."""
    model_cfg = run.cfg.model
    if is_hf_model(run.model):
        return str(model_cfg.pretrained_model_name_or_path), HF_TASKS[model_cfg.task].peft_task_type
    checkpoint = model_cfg.get("checkpoint")
    return (str(checkpoint) if checkpoint else None), None


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
    base, task_type = peft_target(run)
    export_peft(run.model, output, base_model_name_or_path=base, task_type=task_type)
    load_kwargs: dict[str, Any] = {}
    if task_type is not None:
        tokenizer = run.datamodule.tokenizer
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(output)
        if task_type == "SEQ_CLS":
            labels = getattr(run.datamodule, "label_names", None)
            load_kwargs = head_kwargs(run.model, base, labels)
    print(
        f"exported {len(run.report.replaced)} adapter layers of {cfg.ckpt_path} to {output} "
        f"(task_type {task_type}, base {base})"
        + (
            f"; load it with from_pretrained({str(output)!r}, **{load_kwargs})"
            if load_kwargs
            else ""
        )
    )
    write_json(
        Path(cfg.paths.output_dir) / "export.json",
        {
            "ckpt_path": str(cfg.ckpt_path),
            "output": str(output),
            "task_type": task_type,
            "base_model_name_or_path": base,
            "load_kwargs": load_kwargs,
        },
    )
    return {"adapted_layers": float(len(run.report.replaced))}


main = hydra_entry("export")(export)

if __name__ == "__main__":
    main()

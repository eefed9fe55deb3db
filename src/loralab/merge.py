"""`python -m loralab.merge ckpt_path=... output=...`: a run's adapter folded into its base.

The adapter's update is folded into the base weights (`fold_into`, whatever the variant and
layer type) and the plain model is written with the modules the run trained in full:

- a Hugging Face backbone (`model=hf`, `model=minilm`) becomes a folder that transformers
  loads on its own: `config.json` (with `num_labels`, `id2label` and `label2id` from the
  run's label names), `model.safetensors` and the tokenizer files, so
  `AutoModelForSequenceClassification.from_pretrained(output)` and
  `transformers.pipeline("text-classification", model=output)` need no loralab code;
- loralab's own backbones become a backbone file (`save_backbone`) that loads into the
  backbone class with `load_backbone`, e.g. as `model.checkpoint` of the next run.

As a proof, the output is loaded back the way its users will load it (from_pretrained, or a
freshly built backbone) and its outputs are compared with the adapter model's on a
validation batch; the largest difference is printed (and saved in merge.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from loralab.errors import ConfigError
from loralab.io import to_plain, write_json
from loralab.keys import MERGE_DIFF
from loralab.lora import lora_layers, merge_and_unwrap
from loralab.measure.merge_diff import output_diff
from loralab.models import load_backbone, save_backbone
from loralab.models.hf import is_hf_model
from loralab.models.hf_folder import load_pretrained_folder, write_pretrained_folder
from loralab.models.outputs import logits_of
from loralab.run.builder import LoadedRun, load_run
from loralab.run.cli import hydra_entry

log = logging.getLogger("loralab.merge")


def sample_inputs(datamodule: Any) -> dict[str, torch.Tensor]:
    """The model inputs of the first validation batch (labels dropped)."""
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()))
    return {k: v for k, v in batch.items() if k != "labels"}


def write_backbone_file(run: LoadedRun, model: nn.Module, output: Path) -> tuple[int, nn.Module]:
    """A loralab backbone file, and the plain backbone class loading it (no LoRA code)."""
    metadata = {
        "model": to_plain(run.cfg.model),
        "adapter": to_plain(run.cfg.adapter),
        "merged_from": str(run.ckpt_path),
    }
    size = save_backbone(model, output, metadata)
    plain = hydra.utils.instantiate(run.cfg.model)
    load_backbone(plain, output)
    return size, plain


def write_hf_folder(run: LoadedRun, model: nn.Module, output: Path) -> tuple[int, nn.Module]:
    """A from_pretrained folder, and transformers loading it (no loralab code)."""
    task = run.cfg.model.task
    datamodule = run.datamodule
    size = write_pretrained_folder(
        model, output, task, getattr(datamodule, "label_names", None), datamodule.tokenizer
    )
    return size, load_pretrained_folder(output, task)


def merge(cfg: DictConfig) -> dict[str, float]:
    """Write the merged model; return the max |merged - unmerged| output difference."""
    output = Path(cfg.output)
    if output.exists() and not cfg.overwrite:
        raise ConfigError(
            f"output: {output} exists already; pass a new path, or overwrite=true to replace it."
        )
    run = load_run(cfg.ckpt_path, allow_other_base=cfg.allow_other_base)
    model = run.model.eval()
    inputs = sample_inputs(run.datamodule)
    adapters = sum(1 for _ in lora_layers(model))
    with torch.no_grad():
        unmerged = logits_of(model(**inputs))
    merge_and_unwrap(model)
    hf = is_hf_model(model)
    size, reloaded = (write_hf_folder if hf else write_backbone_file)(run, model, output)
    with torch.no_grad():
        merged = logits_of(reloaded.eval()(**inputs))
    diff = output_diff(merged, unmerged)
    kind = "a from_pretrained folder" if hf else "a backbone file"
    print(
        f"merged {adapters} adapter layers into {output}, {kind} ({size:,} bytes); max |merged "
        f"- unmerged| output on a validation batch of {len(unmerged)}: {diff:.3g}"
    )
    write_json(
        Path(cfg.paths.output_dir) / "merge.json",
        {
            "ckpt_path": str(cfg.ckpt_path),
            "output": str(output),
            "format": "hf_folder" if hf else "backbone_file",
            "bytes": size,
            MERGE_DIFF: diff,
        },
    )
    return {MERGE_DIFF: diff}


main = hydra_entry("merge")(merge)

if __name__ == "__main__":
    main()

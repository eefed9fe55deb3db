"""`python -m loralab.merge ckpt_path=... output=...`: a run's adapter folded into its base.

The result is a plain backbone file (`save_backbone`): the base weights with each adapter's
update folded in (`fold_into`, whatever the variant), and the modules the run trained in
full. It loads into the backbone class with `load_backbone`, with no LoRA code at all, e.g.
as `model.checkpoint` of the next run. As a proof, the file is loaded into a freshly built
plain backbone and its outputs are compared with the adapter model's on a validation batch;
the largest difference is printed (and saved in merge.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from loralab.errors import ConfigError
from loralab.io import to_plain, write_json
from loralab.lora import lora_layers, merge_and_unwrap
from loralab.measure.merge_diff import MERGE_DIFF, output_diff
from loralab.models import load_backbone, save_backbone
from loralab.models.outputs import logits_of
from loralab.run.builder import load_run
from loralab.run.cli import hydra_entry

log = logging.getLogger("loralab.merge")


def sample_inputs(datamodule: Any) -> dict[str, torch.Tensor]:
    """The model inputs of the first validation batch (labels dropped)."""
    datamodule.setup("validate")
    batch = next(iter(datamodule.val_dataloader()))
    return {k: v for k, v in batch.items() if k != "labels"}


def merge(cfg: DictConfig) -> dict[str, float]:
    """Write the merged backbone; return the max |merged - unmerged| output difference."""
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
    metadata = {
        "model": to_plain(run.cfg.model),
        "adapter": to_plain(run.cfg.adapter),
        "merged_from": str(cfg.ckpt_path),
    }
    size = save_backbone(model, output, metadata)

    # the proof: a backbone built from the model config alone loads the file, no LoRA code
    plain = hydra.utils.instantiate(run.cfg.model)
    load_backbone(plain, output)
    with torch.no_grad():
        merged = logits_of(plain.eval()(**inputs))
    diff = output_diff(merged, unmerged)
    print(
        f"merged {adapters} adapter layers into {output} ({size:,} bytes); max |merged - "
        f"unmerged| output on a validation batch of {len(unmerged)}: {diff:.3g}"
    )
    write_json(
        Path(cfg.paths.output_dir) / "merge.json",
        {"ckpt_path": str(cfg.ckpt_path), "output": str(output), "bytes": size, MERGE_DIFF: diff},
    )
    return {MERGE_DIFF: diff}


main = hydra_entry("merge")(merge)

if __name__ == "__main__":
    main()

"""`python -m loralab.merge ckpt_path=... output=...`: a run's adapter folded into its base.

The result is a plain backbone file (`save_backbone`): the base weights with the update
`scaling * B @ A` (or DoRA's rescaled rows) added in, and the modules the run trained in
full. It loads into the backbone class with `load_backbone`, with no LoRA code at all,
e.g. as `model.checkpoint` of the next run. As a proof, the file is loaded into a freshly
built plain backbone and its outputs are compared with the adapter model's on a
validation batch; the largest difference is printed (and saved in merge.json).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from loralab import config as _config  # noqa: F401 - registers the config resolvers
from loralab.eval import run_config_of
from loralab.lora import lora_layers, merge_and_unwrap
from loralab.lora.inject import output_tensor
from loralab.models import load_backbone, save_backbone
from loralab.runner import ConfigError, run_guarded, to_plain
from loralab.summary import write_json_atomic
from loralab.train import build_run

log = logging.getLogger("loralab.merge")
METRIC = "merge/max_abs_diff"


def load_run_weights(task: torch.nn.Module, ckpt_path: str | Path) -> None:
    """The trained tensors of a checkpoint into a task built by `build_run` (frozen ones filled in)."""
    checkpoint: dict[str, Any] = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    task.on_load_checkpoint(checkpoint)
    task.load_state_dict(checkpoint["state_dict"])


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
    run_cfg = run_config_of(cfg.ckpt_path)
    datamodule, task, _ = build_run(run_cfg)
    load_run_weights(task, cfg.ckpt_path)
    model = task.model.eval()
    inputs = sample_inputs(datamodule)
    adapters = sum(1 for _ in lora_layers(model))
    with torch.no_grad():
        unmerged = output_tensor(model(**inputs))
    merge_and_unwrap(model)
    metadata = {"model": to_plain(run_cfg.model), "merged_from": str(cfg.ckpt_path)}
    size = save_backbone(model, output, {**metadata, "adapter": to_plain(run_cfg.adapter)})

    # the proof: a backbone built from the model config alone loads the file, no LoRA code
    plain = hydra.utils.instantiate(run_cfg.model)
    load_backbone(plain, output)
    with torch.no_grad():
        merged = output_tensor(plain.eval()(**inputs))
    diff = (merged.float() - unmerged.float()).abs().max().item()
    print(
        f"merged {adapters} adapter layers into {output} ({size:,} bytes); max |merged - "
        f"unmerged| output on a validation batch of {len(unmerged)}: {diff:.3g}"
    )
    write_json_atomic(
        Path(cfg.paths.output_dir) / "merge.json",
        {"ckpt_path": str(cfg.ckpt_path), "output": str(output), "bytes": size, METRIC: diff},
    )
    return {METRIC: diff}


@hydra.main(version_base="1.3", config_path="../../configs", config_name="merge")
def main(cfg: DictConfig) -> float | None:
    return run_guarded(merge, cfg)


if __name__ == "__main__":
    main()

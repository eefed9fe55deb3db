"""`python -m loralab.eval ckpt_path=...`: rebuild the run stored in a checkpoint and test it.

The checkpoint carries its run's resolved config (data, model, adapter, task) and, for LoRA,
only the adapter tensors: the frozen base is rebuilt from the base checkpoint it names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from loralab import config as _config  # noqa: F401 - registers the config resolvers
from loralab.callbacks.run_config import CONFIG_KEY
from loralab.runner import ConfigError, run_guarded
from loralab.summary import write_json_atomic
from loralab.train import build_run, scalar_metrics

log = logging.getLogger("loralab.eval")


def run_config_of(ckpt_path: str | Path) -> DictConfig:
    """The training config a checkpoint was written with."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path: no checkpoint at {path}; pass a best.ckpt or last.ckpt from a run's "
            "checkpoints/ folder, e.g. ckpt_path=logs/train/runs/<time>/checkpoints/best.ckpt."
        )
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    if CONFIG_KEY not in checkpoint:
        raise ConfigError(
            f"ckpt_path: {path} holds no loralab run config; evaluate a checkpoint written by "
            "`python -m loralab.train`."
        )
    return OmegaConf.create(checkpoint[CONFIG_KEY])


def evaluate(cfg: DictConfig) -> dict[str, float]:
    run_cfg = run_config_of(cfg.ckpt_path)
    if cfg.split not in ("test", "val"):
        raise ConfigError(f"split must be test or val, got {cfg.split!r}; set split=test.")
    datamodule, task, _ = build_run(run_cfg)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    run = trainer.test if cfg.split == "test" else trainer.validate
    run(task, datamodule=datamodule, ckpt_path=str(cfg.ckpt_path))
    metrics = scalar_metrics(trainer)
    write_json_atomic(
        Path(cfg.paths.output_dir) / "metrics.json",
        {"ckpt_path": str(cfg.ckpt_path), "split": cfg.split, "metrics": metrics},
    )
    log.info("metrics of %s: %s", cfg.ckpt_path, metrics)
    return metrics


@hydra.main(version_base="1.3", config_path="../../configs", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_guarded(evaluate, cfg)


if __name__ == "__main__":
    main()

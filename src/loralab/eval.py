"""`python -m loralab.eval ckpt_path=...`: rebuild the run stored in a checkpoint and test it.

The checkpoint carries its run's resolved config (data, model, adapter, task) and, for LoRA,
only the adapter tensors: the frozen base is rebuilt from the base checkpoint it names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from loralab.errors import ConfigError
from loralab.io import write_json
from loralab.run.builder import load_run
from loralab.run.cli import hydra_entry
from loralab.run.compiled import compile_model
from loralab.run.tracking import scalar_metrics

log = logging.getLogger("loralab.eval")
SPLITS = ("test", "val")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test (or validate) the run of `ckpt_path`; write metrics.json; return the metrics."""
    if cfg.split not in SPLITS:
        raise ConfigError(f"split must be test or val, got {cfg.split!r}; set split=test.")
    run = load_run(cfg.ckpt_path, allow_other_base=cfg.allow_other_base)
    if cfg.get("compile"):
        compile_model(run.model, **cfg.compile_options)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    check = trainer.test if cfg.split == "test" else trainer.validate
    check(run.task, datamodule=run.datamodule)
    metrics = scalar_metrics(trainer)
    write_json(
        Path(cfg.paths.output_dir) / "metrics.json",
        {"ckpt_path": str(cfg.ckpt_path), "split": cfg.split, "metrics": metrics},
    )
    log.info("metrics of %s: %s", cfg.ckpt_path, metrics)
    return metrics


main = hydra_entry("eval")(evaluate)

if __name__ == "__main__":
    main()

"""`python -m loralab.train`: build data, backbone, adapter and task from the config; fit; test.

Every stage takes the previous stage's output and hands on one thing:
config -> datamodule -> backbone -> apply_adapter(backbone) -> task -> trainer.fit/test -> summary.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from loralab import config as _config  # noqa: F401 - registers the config resolvers
from loralab.callbacks import EmbedRunConfig, ResourceMonitor
from loralab.instantiate import instantiate_callbacks, instantiate_loggers
from loralab.lora import (
    AdapterReport,
    apply_adapter,
    base_weight_bytes,
    count_parameters,
    format_parameter_table,
    save_adapter,
)
from loralab.models import save_backbone
from loralab.results import log_final_hparams, log_parameter_counts
from loralab.resume import resume_checkpoint
from loralab.runner import run_guarded, to_plain
from loralab.summary import adapter_fields, file_size, write_summary

log = logging.getLogger("loralab.train")


def build_run(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule, AdapterReport]:
    """Data, adapted backbone and task module of a run: shared by training and evaluation."""
    datamodule = hydra.utils.instantiate(cfg.data)
    backbone = hydra.utils.instantiate(cfg.model)
    report = apply_adapter(backbone, cfg.adapter)
    task = hydra.utils.instantiate(cfg.task, model=backbone)
    return datamodule, task, report


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test one run; write its summary.json; return its final metrics."""
    started = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume_checkpoint(cfg)  # ckpt_path=last: this run folder's newest last.ckpt
    datamodule, task, report = build_run(cfg)
    log.info("%s\n%s", report.summary(), format_parameter_table(task.model))

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), loggers)
    callbacks.append(EmbedRunConfig(to_plain(cfg)))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    log_parameter_counts(trainer, task.model)

    metrics: dict[str, float] = {}
    if cfg.get("train"):
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(scalar_metrics(trainer))
    best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        trainer.test(task, datamodule=datamodule, ckpt_path=best_ckpt or None)
        metrics.update(scalar_metrics(trainer))  # testing replaces the trainer's metrics

    if trainer.is_global_zero:
        files = save_weights(cfg, task.model, report, Path(cfg.paths.output_dir))
        summary = build_summary(cfg, trainer, task.model, metrics, files, best_ckpt)
        summary["wall_time_s"] = time.perf_counter() - started
        write_summary(cfg.paths.output_dir, summary)
        log_final_hparams(trainer, cfg, metrics)
        log.info("final metrics: %s", {k: float(f"{v:.4g}") for k, v in sorted(metrics.items())})
    return metrics


def scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def save_weights(
    cfg: DictConfig, model: Any, report: AdapterReport, output_dir: Path
) -> dict[str, int | None]:
    """The adapter file of a LoRA run, and the backbone of a pretraining run."""
    sizes: dict[str, int | None] = {"adapter_bytes": None, "backbone_bytes": None}
    if report.method != "full":
        metadata = {
            "adapter": to_plain(cfg.adapter),
            "base_checkpoint": cfg.model.get("checkpoint"),
        }
        sizes["adapter_bytes"] = save_adapter(output_dir / "adapter.safetensors", model, metadata)
    if cfg.get("save_backbone"):
        sizes["backbone_bytes"] = save_backbone(
            model, cfg.save_backbone, {"model": to_plain(cfg.model)}
        )
        log.info("saved the trained backbone to %s", cfg.save_backbone)
    return sizes


def build_summary(
    cfg: DictConfig,
    trainer: L.Trainer,
    model: Any,
    metrics: dict[str, float],
    files: dict[str, int | None],
    best_ckpt: str,
) -> dict[str, Any]:
    counts = count_parameters(model)
    monitor = next((c for c in trainer.callbacks if isinstance(c, ResourceMonitor)), None)
    return {
        "status": "completed",
        "run_name": cfg.get("run_name"),
        **adapter_fields(to_plain(cfg.adapter)),
        "lr": cfg.adapter.get("lr"),
        "seed": cfg.get("seed"),
        "trainable_params": counts.trainable,
        "total_params": counts.total,
        **base_weight_bytes(model),  # stored bytes of the base weights, and as float32
        "trainable_percent": counts.percent,
        "metrics": metrics,
        "global_step": trainer.global_step,
        **(monitor.summary(trainer) if monitor else {}),
        "checkpoint_bytes": file_size(best_ckpt),
        "checkpoint_path": best_ckpt or None,
        **files,
        "base_checkpoint": cfg.model.get("checkpoint"),
    }


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_guarded(train, cfg)


if __name__ == "__main__":
    main()

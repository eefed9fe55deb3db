"""`python -m loralab.train`: build data, backbone, adapter and task from the config; fit; test.

Every stage takes the previous stage's output and hands on one thing:
config -> datamodule -> backbone -> apply_adapter(backbone) -> task -> trainer.fit/test -> summary.

Nothing a user has is replaced on the way: a fresh run refuses a folder that holds an
earlier run (`run.folder`), and a pretraining run refuses to replace an existing backbone
file unless `overwrite=true`; a `fast_dev_run` writes no backbone at all.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from loralab.callbacks import EmbedRunConfig, ResourceMonitor
from loralab.io import file_size, to_plain
from loralab.keys import SOURCE_PREFIX
from loralab.lora import (
    base_weight_bytes,
    count_parameters,
    format_parameter_table,
    lora_layers,
    save_adapter,
)
from loralab.models import save_backbone
from loralab.models.backbone import check_backbone_target
from loralab.run.builder import Run, build_run
from loralab.run.cli import hydra_choice, hydra_entry, in_multirun
from loralab.run.compiled import compile_model
from loralab.run.folder import check_fresh_folder
from loralab.run.resume import resume_checkpoint
from loralab.run.summary import ADAPTER_FILE, COMPLETED, RunSummary, adapter_fields
from loralab.run.tracking import log_final_hparams, log_parameter_counts, scalar_metrics

log = logging.getLogger("loralab.train")


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test one run; write its summary.json; return its final metrics."""
    started = time.perf_counter()
    folder_key = "hydra.sweep.dir" if in_multirun() else "hydra.run.dir"
    check_fresh_folder(cfg.paths.output_dir, cfg.get("ckpt_path"), folder_key)
    claim_backbone_file(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume_checkpoint(cfg)  # ckpt_path=last: this run folder's newest last.ckpt
    run = build_run(cfg)
    log.info("%s\n%s", run.report.summary(), format_parameter_table(run.model))
    log.info("torch threads: %d", torch.get_num_threads())
    if cfg.get("compile"):
        compile_model(run.model, **cfg.compile_options)

    loggers = instantiate_group(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), loggers)
    base = run.base.to_dict() if run.base is not None else None
    record = EmbedRunConfig(to_plain(cfg), base, started)  # also times all parts of the run
    callbacks.append(record)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    log_parameter_counts(trainer, run.model)

    metrics: dict[str, float] = {}
    if cfg.get("train"):
        trainer.fit(run.task, datamodule=run.datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics.update(scalar_metrics(trainer))
    best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        trainer.test(
            run.task, datamodule=run.datamodule, ckpt_path=best_ckpt or None, weights_only=True
        )
        metrics.update(scalar_metrics(trainer))  # testing replaces the trainer's metrics

    if trainer.is_global_zero:
        files = save_weights(cfg, run, Path(cfg.paths.output_dir))
        summary = build_summary(cfg, trainer, run.model, metrics, files, best_ckpt)
        summary.wall_time_s = record.wall_time_s()
        summary.write(cfg.paths.output_dir)
        log_final_hparams(trainer, cfg, metrics)
        log.info("final metrics: %s", {k: float(f"{v:.4g}") for k, v in sorted(metrics.items())})
    return metrics


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Every entry of a `name: {_target_: ...}` group; entries set to null are switched off."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(node) for node in cfg.values() if node and "_target_" in node]


def instantiate_callbacks(cfg: DictConfig | None, loggers: list[Logger]) -> list[Callback]:
    """The callbacks of the config; without loggers (logger=[]), the ones that need one drop out."""
    callbacks = instantiate_group(cfg)
    if not loggers:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def claim_backbone_file(cfg: DictConfig) -> None:
    """Before anything runs: refuse to replace an existing backbone file without overwrite=true,
    and let a debug run or a fast_dev_run write none (nor its tokenizer, which follows
    save_backbone). The debug configs set save_backbone: null themselves; this also covers a
    save_backbone given on the command line."""
    if not cfg.get("save_backbone"):
        return
    debug = hydra_choice("debug")
    if cfg.trainer.get("fast_dev_run") or debug:
        why = f"debug={debug}" if debug else "trainer.fast_dev_run"
        log.info("%s: not saving the backbone to %s", why, cfg.save_backbone)
        cfg.save_backbone = None
        return
    check_backbone_target(cfg.save_backbone, bool(cfg.get("overwrite")))


def save_weights(cfg: DictConfig, run: Run, output_dir: Path) -> dict[str, int | None]:
    """The adapter file of a LoRA run (with its base's identity), and the backbone of a
    pretraining run."""
    model, report = run.model, run.report
    sizes: dict[str, int | None] = {"adapter_bytes": None, "backbone_bytes": None}
    if report.method != "full":
        metadata = {
            "adapter": to_plain(cfg.adapter),
            "base_checkpoint": cfg.model.get("checkpoint"),
            "layer_types": {name: layer.layer_type.name for name, layer in lora_layers(model)},
        }
        sizes["adapter_bytes"] = save_adapter(
            output_dir / ADAPTER_FILE, model, metadata, base=run.base
        )
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
) -> RunSummary:
    counts = count_parameters(model)
    monitor = next((c for c in trainer.callbacks if isinstance(c, ResourceMonitor)), None)
    return RunSummary(
        status=COMPLETED,
        run_name=cfg.get("run_name"),
        **adapter_fields(to_plain(cfg.adapter)),
        seed=cfg.get("seed"),
        trainable_params=counts.trainable,
        total_params=counts.total,
        trainable_percent=counts.percent,
        **base_weight_bytes(model),  # stored bytes of the base weights, and as float32
        metrics=metrics,
        global_step=trainer.global_step,
        **(monitor.summary(trainer) if monitor else {}),
        checkpoint_bytes=file_size(best_ckpt),
        checkpoint_path=best_ckpt or None,
        **files,
        base_checkpoint=cfg.model.get("checkpoint"),
        test_size=split_size(trainer.datamodule, "test"),
        source=source_name(cfg, metrics),
    )


def split_size(datamodule: Any, split: str) -> int | None:
    """The examples of a split, for data modules that can count them."""
    size = getattr(datamodule, "split_size", None)
    return size(split) if callable(size) else None


def source_name(cfg: DictConfig, metrics: dict[str, float]) -> str | None:
    """What the run's source/* metrics measured, in words; None if it measured no source."""
    if not any(key.startswith(SOURCE_PREFIX) for key in metrics):
        return None
    return OmegaConf.select(cfg, "source.name", default=None)


main = hydra_entry("train")(train)

if __name__ == "__main__":
    main()

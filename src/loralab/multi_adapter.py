"""`python -m loralab.multi_adapter`: two adapters, two tasks, one frozen base.

Trains one LoRA adapter per task of `tasks` (adapter name -> synthetic `data.rule`) over the
same pretrained backbone, switching adapters with `MultiAdapterModel.set_adapter`, saves each
as `<run dir>/<name>.safetensors`, and prints each task's test accuracy with its own adapter,
with the other adapter, and with none (the bare base and its untrained head): one row per
task, one column per adapter plus "none". Only the own-adapter diagonal should be high.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from loralab.io import write_json
from loralab.lora import MultiAdapterModel
from loralab.models.outputs import logits_of
from loralab.run.cli import hydra_entry

NO_ADAPTER = "none"


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Share of correct argmax predictions over a loader of batch dicts."""
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        correct += int((logits_of(model(**batch)).argmax(dim=-1) == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def train_adapters(cfg: DictConfig) -> tuple[MultiAdapterModel, dict[str, DataLoader]]:
    """One adapter per task on one backbone; returns them and each task's test loader."""
    adapters = MultiAdapterModel(hydra.utils.instantiate(cfg.model))
    tests: dict[str, DataLoader] = {}
    for name, rule in cfg.tasks.items():
        datamodule = hydra.utils.instantiate(cfg.data, rule=rule)
        adapters.add_adapter(name, cfg.adapter)
        adapters.set_adapter(name)  # only this adapter's tensors are in the model now
        task = hydra.utils.instantiate(cfg.task, model=adapters.model)
        trainer: L.Trainer = hydra.utils.instantiate(
            cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False
        )
        trainer.fit(task, datamodule=datamodule)
        adapters.save_adapter(name, Path(cfg.paths.output_dir) / f"{name}.safetensors")
        datamodule.setup("test")
        tests[name] = datamodule.test_dataloader()
    return adapters, tests


def accuracy_table(
    adapters: MultiAdapterModel, tests: dict[str, DataLoader]
) -> dict[str, dict[str, float]]:
    """task -> adapter (or "none") -> test accuracy."""
    table: dict[str, dict[str, float]] = {}
    for task_name, loader in tests.items():
        row = {}
        for adapter in [*adapters, None]:
            with adapters.using(adapter) as model:
                row[adapter or NO_ADAPTER] = accuracy(model, loader)
        table[task_name] = row
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(table.values())))
    width = max(12, *(len(c) for c in columns)) + 2
    lines = ["task \\ adapter".ljust(16) + "".join(c.rjust(width) for c in columns)]
    for task_name, row in table.items():
        lines.append(task_name.ljust(16) + "".join(f"{row[c]:.3f}".rjust(width) for c in columns))
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict[str, float]:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    adapters, tests = train_adapters(cfg)
    table = accuracy_table(adapters, tests)
    print("test accuracy of each task (rows) with each adapter (columns):")
    print(format_table(table))
    write_json(Path(cfg.paths.output_dir) / "multi_adapter.json", {"test_acc": table})
    # the number a sweeper would optimise: each task's accuracy with its own adapter
    return {f"{name}/test_acc": row[name] for name, row in table.items()}


main = hydra_entry("multi_adapter")(run)

if __name__ == "__main__":
    main()

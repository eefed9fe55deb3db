"""What fine-tuning gained and what it forgot, measured the same way for every adapter.

Before the first training step, and again when the run is tested, this callback evaluates

- the target: the run's own test split, logged as `test/acc_start` (or `test/ppl_start`)
  beside the task's `test/acc`, so the report can tell what the run learned;
- the source: a task the pretrained base already did (`configs/source/`), logged as
  `source/acc_start` -> `source/acc` (or `source/ppl_start` -> `source/ppl`), so the report
  can tell what the run forgot.

Accuracy is measured when a batch has one label per sequence, perplexity when it has one per
token. A classifier fine-tuned to a new task has a new head; the source task is then scored
with the base's own head (`source.head`, read from the base checkpoint) on the fine-tuned
features: what the fine-tuned model, with its old head put back, still does on the old task.
The task modules stay as they are: the callback only calls `task(batch)`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from torch import Tensor, nn

from loralab.errors import ConfigError
from loralab.keys import SOURCE_PREFIX, START
from loralab.tasks.language_modeling import IGNORE_INDEX, run_precision

log = logging.getLogger(__name__)

# exp of a mean loss above this is "diverged", not a number worth printing
MAX_LOG_PPL = 50.0


class SourceEvaluation(L.Callback):
    """Target and source metrics before the first step (`*_start`) and with the test."""

    def __init__(
        self,
        source: Mapping[str, Any] | None = None,
        base_checkpoint: str | None = None,
        target_start: bool = True,
    ) -> None:
        if isinstance(source, DictConfig):
            source = OmegaConf.to_container(source, resolve=True)
        self.source: dict[str, Any] | None = dict(source) if source else None
        self.base_checkpoint = base_checkpoint
        self.target_start = target_start
        # measured before the first step; saved in checkpoints, so a resumed run keeps them
        self.start: dict[str, float] = {}
        self._source_data: L.LightningDataModule | None = None
        self._head: nn.Module | None = None

    @property
    def measures_source(self) -> bool:
        """A source to measure and a pretrained base that knew it (from scratch: nothing)."""
        return bool(self.source and self.base_checkpoint)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.measures_source or self._source_data is not None:
            return
        if "data" not in self.source:
            raise ConfigError("source.data is missing; name the data module of the base's task.")
        self._source_data = hydra.utils.instantiate(self.source["data"])
        self._source_data.setup("test")
        check_vocabulary(self._source_data, trainer.datamodule)
        head = self.source.get("head")
        if head:
            self._head = read_head(self.base_checkpoint, head)
        log.info("source task: %s", self.source.get("name", "source.data"))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.start:
            if trainer.global_step > 0:
                log.warning("resumed without start metrics: *_start is not measured again")
                return
            self.start = self.measure_start(trainer, pl_module)
        for key, value in self.start.items():  # measured now, or restored on resume
            pl_module.log(key, value, on_step=False, on_epoch=True, rank_zero_only=True)

    def measure_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        start: dict[str, float] = {}
        datamodule = trainer.datamodule
        if self.target_start and "test" in (getattr(datamodule, "splits", None) or {}):
            kind, value = evaluate(pl_module, datamodule.test_dataloader())
            start[f"test/{kind}{START}"] = value
        if self.measures_source:
            kind, value = self.evaluate_source(pl_module)
            start[f"{SOURCE_PREFIX}{kind}{START}"] = value
        return start

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.measures_source and self._source_data is not None:
            kind, value = self.evaluate_source(pl_module)
            pl_module.log(f"{SOURCE_PREFIX}{kind}", value, rank_zero_only=True)

    def evaluate_source(self, pl_module: L.LightningModule) -> tuple[str, float]:
        """The source metric of the model as it is now, with the base's head if it has one."""
        head_name = self.source.get("head")
        swap = swapped(pl_module.model, head_name, self._head) if self._head else nullcontext()
        with swap:
            return evaluate(pl_module, self._source_data.test_dataloader())

    def state_dict(self) -> dict[str, Any]:
        return {"start": dict(self.start)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.start = dict(state_dict.get("start", {}))


@torch.no_grad()
def evaluate(task: L.LightningModule, loader: Iterable[dict[str, Tensor]]) -> tuple[str, float]:
    """('acc', accuracy) for one label per sequence, ('ppl', perplexity) for one per token."""
    was_training = task.training
    task.eval()
    correct = total = 0
    loss_sum, tokens = 0.0, 0
    kind = "acc"
    try:
        for batch in loader:
            batch = task.transfer_batch_to_device(batch, task.device, 0)
            with run_precision(task):  # before and after training at the run's precision
                logits = task(batch)
            labels = batch["labels"]
            if labels.dim() == 1:
                correct += int((logits.argmax(dim=-1) == labels).sum())
                total += labels.numel()
            else:
                kind = "ppl"
                loss_sum += float(
                    F.cross_entropy(
                        logits.flatten(0, 1).float(),
                        labels.flatten(),
                        ignore_index=IGNORE_INDEX,
                        reduction="sum",
                    )
                )
                tokens += int((labels != IGNORE_INDEX).sum())
    finally:
        task.train(was_training)
    if kind == "ppl":
        return kind, math.exp(min(loss_sum / max(tokens, 1), MAX_LOG_PPL))
    return kind, correct / max(total, 1)


def check_vocabulary(source: Any, target: Any) -> None:
    """The source must be read with the ids the model reads, or its score means nothing."""
    source_vocab = getattr(source, "vocab_size", None)
    target_vocab = getattr(target, "vocab_size", None)
    if source_vocab and target_vocab and source_vocab != target_vocab:
        raise ConfigError(
            f"source.data emits {source_vocab} token ids but data emits {target_vocab}; the "
            "source must use the run's vocabulary (e.g. source.data.tokenizer=${data.tokenizer}), "
            "or drop the source with ~source."
        )


def read_head(checkpoint: str, name: str) -> nn.Linear:
    """The base's own output layer `name` (a Linear), read from its backbone file."""
    try:
        with safe_open(str(checkpoint), framework="pt") as file:
            tensors = {k: file.get_tensor(k) for k in file.keys() if k.startswith(name + ".")}
    except (OSError, RuntimeError) as error:
        raise ConfigError(
            f"source.head={name}: cannot read the base checkpoint {checkpoint} ({error}); "
            "point model.checkpoint at a backbone file, or set source.head=null."
        ) from None
    weight, bias = tensors.pop(f"{name}.weight", None), tensors.pop(f"{name}.bias", None)
    if weight is None or weight.dim() != 2 or tensors:
        raise ConfigError(
            f"source.head={name}: {checkpoint} holds no linear layer {name} (a 2-d "
            f"{name}.weight and maybe {name}.bias); name the base's own output layer, or set "
            "source.head=null to score the source with the run's head."
        )
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    head.weight.data.copy_(weight)
    if bias is not None:
        head.bias.data.copy_(bias)
    return head.requires_grad_(False)


@contextmanager
def swapped(model: nn.Module, name: str, module: nn.Module) -> Iterator[None]:
    """`model.<name>` replaced by `module` (on the same device and dtype) for the block."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    current = getattr(parent, child, None)
    if not isinstance(current, nn.Module):
        raise ConfigError(f"source.head={name} is not a module of the model; name its head.")
    reference = next(current.parameters(), None)
    if reference is not None:
        module = module.to(device=reference.device, dtype=reference.dtype)
    setattr(parent, child, module)
    try:
        yield
    finally:
        setattr(parent, child, current)

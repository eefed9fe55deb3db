"""Causal language modelling as a LightningModule that never asks which adapter it trains."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from loralab.tasks.across_ranks import score_across_ranks, token_share
from loralab.tasks.base import AdapterBlindTask, OptimizerFactory
from loralab.tasks.exact_match import log_answers

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of a position whose loss does not count (padding, a prompt)


class LanguageModelingTask(AdapterBlindTask):
    """Next-token cross-entropy of `model(input_ids) -> logits [B, T, V]` on whatever trains.

    Logs train/loss, val/loss, val/ppl, test/loss, test/ppl (perplexity = exp of the mean
    per-token loss), and val/loss_start, val/ppl_start: the model before its first training
    step, which for a fine-tuning run is the pretrained base on the new text.

    When the data has answers to check (`datamodule.generation_set(split)`, e.g.
    data=instruct), it also logs val/exact_match on the first `val_generations` validation
    examples after every validation epoch and test/exact_match on the whole test set
    (greedy, batched, `max_new_tokens` at most), per group as `<split>/exact_match/<group>`,
    and shows `text_samples` prompt / generated / expected rows in TensorBoard's TEXT tab.
    A set that declares what guessing scores logs it at test too (test/exact_match_chance,
    test/exact_match_majority).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        warmup_ratio: float = 0.0,
        cosine: bool = False,
        log_start_ppl: bool = True,
        val_generations: int | None = 64,
        max_new_tokens: int = 32,
        generation_batch_size: int = 16,
        text_samples: int = 4,
    ) -> None:
        super().__init__(model, optimizer, warmup_ratio, cosine)
        self.log_start_ppl = log_start_ppl
        self.val_generations = val_generations
        self.max_new_tokens = max_new_tokens
        self.generation_batch_size = generation_batch_size
        self.text_samples = text_samples
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()

    def token_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """Mean cross-entropy over the batch's predicted tokens, and how many there were.

        The output head scores only the positions whose label counts (an instruction's
        answer, not its prompt or padding): with a 49k-token vocabulary the head is a fifth of
        a small LLM's arithmetic, and most positions of a prompt-masked batch have no label.
        """
        labels = batch["labels"]
        counted = labels != IGNORE_INDEX
        with head_on_rows(self.model, counted):
            logits = self(batch)
        if logits.dim() == 2:  # [N, V]: the head saw the counted rows only
            loss = F.cross_entropy(logits.float(), labels[counted])
        else:  # a model without a known head: every position was scored
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX
            )
        return loss, int(counted.sum())

    def on_train_start(self) -> None:
        if self.log_start_ppl and self.trainer.datamodule is not None:
            loss = self.mean_loss(self.trainer.datamodule.val_dataloader())
            self.log("val/loss_start", loss, on_epoch=True)
            self.log("val/ppl_start", math.exp(min(loss, 50.0)), on_epoch=True)

    @torch.no_grad()
    def mean_loss(self, loader: Iterable[dict[str, Tensor]]) -> float:
        """Per-token mean loss over a whole loader, in eval mode, leaving the mode as it was."""
        was_training = self.training
        self.eval()
        total, count = 0.0, 0
        try:
            with run_precision(self):
                for batch in loader:
                    batch = self.transfer_batch_to_device(batch, self.device, 0)
                    loss, n = self.token_loss(batch)
                    total, count = total + float(loss) * n, count + n
        finally:
            self.train(was_training)
        return total / max(count, 1)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, n = self.token_loss(batch)
        self.train_loss(loss)
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        # several processes: the gradient of the mean over the global batch's tokens
        return loss * token_share(n, loss.device)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, n = self.token_loss(batch)
        self.val_loss(loss, n)  # weighted by tokens: a short last batch counts for less
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/ppl", perplexity(self.val_loss.compute()), prog_bar=True)
        if not self.trainer.sanity_checking:
            self.log_exact_match("val", self.val_generations)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, n = self.token_loss(batch)
        self.test_loss(loss, n)
        self.log("test/loss", self.test_loss, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.log("test/ppl", perplexity(self.test_loss.compute()))
        self.log_exact_match("test", None)
        self.log_exact_match_baselines()

    def log_exact_match(self, split: str, limit: int | None) -> None:
        """Exact match of greedy answers on the split's generation set, if the data has one."""
        examples = self._generation_set(split)
        if examples is None or len(examples) == 0 or limit == 0:
            return
        # once over the whole set: under DDP/FSDP each rank answers a share, all ranks score all
        with run_precision(self):
            score = score_across_ranks(
                self.model, examples.head(limit), self.max_new_tokens, self.generation_batch_size
            )
        self.log(f"{split}/exact_match", score.exact_match)
        for group, value in score.by_group.items():
            self.log(f"{split}/exact_match/{group}", value)
        log.info(
            "%s exact match at step %d: %.3f of %d %s",
            split,
            self.global_step,
            score.exact_match,
            len(score.answers),
            {g: round(v, 3) for g, v in score.by_group.items()},
        )
        shown = score.answers[: self.text_samples]
        log_answers(self.loggers, f"{split}_answers", shown, self.global_step)

    def log_exact_match_baselines(self) -> None:
        """What guessing scores on test, beside the score: test/exact_match_chance, _majority."""
        datamodule = getattr(self.trainer, "datamodule", None)
        baselines = getattr(datamodule, "exact_match_baselines", None)
        for name, value in (baselines() if callable(baselines) else {}).items():
            self.log(f"test/exact_match_{name}", value)

    def _generation_set(self, split: str) -> Any:
        datamodule = getattr(self.trainer, "datamodule", None)
        generation_set = getattr(datamodule, "generation_set", None)
        return generation_set(split) if callable(generation_set) else None


def run_precision(task: L.LightningModule) -> AbstractContextManager[None]:
    """The trainer's autocast (bf16-mixed: bfloat16 matmuls), for evaluations that run outside
    Lightning's steps (val/loss_start, exact match, the source's perplexity), so that a number
    measured before training and one measured after it are computed alike, at the speed the
    steps run; nothing outside a trainer."""
    try:
        plugin = task.trainer.precision_plugin
    except RuntimeError:  # not attached to a trainer
        return nullcontext()
    return plugin.forward_context()


def output_head(model: nn.Module) -> nn.Module | None:
    """The module that turns hidden states into vocabulary logits, if the model names one:
    a Hugging Face model's `get_output_embeddings()`, else an `lm_head` (TinyGPT)."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else getattr(model, "lm_head", None)
    return head if isinstance(head, nn.Module) else None


@contextmanager
def head_on_rows(model: nn.Module, rows: Tensor) -> Iterator[None]:
    """While inside, the output head reads only the hidden states at `rows` ([B, T] bools),
    so the model returns logits [N, V] for those N positions instead of [B, T, V].

    A head whose input is not [B, T, hidden] (or a model without a known head) is left as it
    is, and the model's logits keep their full shape.
    """
    head = output_head(model)
    if head is None or bool(rows.all()):
        yield
        return

    def select(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        hidden = args[0] if args else None
        if not isinstance(hidden, Tensor) or hidden.shape[:-1] != rows.shape:
            return None
        return (hidden[rows], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def perplexity(mean_loss: Tensor) -> Tensor:
    """exp(loss), clamped so a diverged run logs a huge number instead of inf."""
    return torch.exp(mean_loss.clamp(max=50.0))

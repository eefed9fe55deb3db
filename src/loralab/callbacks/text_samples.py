"""Show what a language model writes as it trains: samples in TensorBoard's TEXT tab."""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from loralab.data.char_tokenizer import CharTokenizer
from loralab.models.sampling import sample_ids
from loralab.tasks.language_modeling import LanguageModelingTask

log = logging.getLogger(__name__)
TAG = "samples"


class TextSamples(L.Callback):
    """After every validation epoch, continue a fixed prompt and log the text.

    A no-op unless the task is language modelling on plain text (characters, or text read
    with a Hugging Face tokenizer, `data=lm_text`) and a TensorBoard logger is attached; data
    with answers to check (`data=instruct`) shows its answers through the task instead. The
    seed is fixed, so the samples of successive epochs differ only because the model
    changed. `prompt: null` uses the datamodule's `sample_prompt()` (the start of the
    validation text).
    """

    def __init__(
        self,
        prompt: str | None = None,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 20,
        seed: int = 0,
    ) -> None:
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        tokenizer = getattr(datamodule, "tokenizer", None)
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or not loggers:
            return
        if not self.applies(pl_module, datamodule, tokenizer):
            return
        prompt = self.prompt if self.prompt is not None else datamodule.sample_prompt()
        if not prompt:
            return
        new_ids = sample_ids(
            pl_module.model,
            torch.as_tensor(tokenizer.encode(prompt), dtype=torch.long),
            self.max_new_tokens,
            self.temperature,
            self.top_k,
            self.seed,
        )
        text = prompt + tokenizer.decode(new_ids)
        # markdown: a code block keeps the sample's line breaks and spacing
        markdown = "```\n" + text + "\n```"
        for logger in loggers:
            logger.experiment.add_text(TAG, markdown, global_step=trainer.global_step)
        log.info("sample at step %d:\n%s", trainer.global_step, text)

    @staticmethod
    def applies(pl_module: L.LightningModule, datamodule: object, tokenizer: object) -> bool:
        """Language modelling on plain text whose tokenizer encodes and decodes."""
        if not isinstance(pl_module, LanguageModelingTask):
            return False
        if isinstance(tokenizer, CharTokenizer):
            return True
        has_answers = getattr(datamodule, "generation_set", lambda split: None)("val")
        codes = hasattr(tokenizer, "encode") and hasattr(tokenizer, "decode")
        return codes and has_answers is None

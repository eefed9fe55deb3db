"""Language-modelling text for a causal LM, tokenised with the model's own tokenizer, packed.

The text comes from a bundled corpus (`data.corpus=a|b`), local files (`.txt`: each file is
one document; CSV/JSONL/Parquet: one document per row of `data.text_field`) or a Hugging
Face dataset (`data.dataset_name`). Every document is followed by the tokenizer's EOS and
the documents of a split are joined into one stream of ids, cut into blocks of
`data.block_size` ids: a batch is `{"input_ids": [B, T], "labels": [B, T]}`, labels being
the inputs shifted by one id, so every id of the stream is a target once. Blocks may span
documents (the EOS between them says where one ends), as in most LM pretraining.

A split the source lacks is carved off the end of the train stream (val, then test, in
that order), so no val or test id was ever a training target.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loralab.data.chat_format import default_bos
from loralab.data.corpora import corpus_text
from loralab.data.dataset import TensorDictDataset
from loralab.data.hf_text import HFTextDataModule
from loralab.data.text_checks import cells, check_columns, check_texts
from loralab.data.text_source import LM_SOURCES, STAGES, load_files, quiet_datasets, stage_splits
from loralab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")


def read_documents(stage: str, path: str, text_field: str, cache_dir: str | None) -> list[str]:
    """The documents of one local file: a whole text file, or a column of a table file."""
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise MissingFileError(
            f"data.{stage}_file: no file at {file}; point it at a .txt, CSV, JSONL or "
            f"Parquet file{'' if stage == 'train' else f' (or set data.{stage}_file=null)'}."
        )
    if file.suffix.lower() in TEXT_SUFFIXES:
        try:
            return [file.read_text(encoding="utf-8")]
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"data.{stage}_file: {file} is not UTF-8 text (byte "
                f"{error.object[error.start : error.end]!r} at offset {error.start}); "
                "re-save the file as UTF-8."
            ) from None
    raw = load_files({stage: str(file)}, cache_dir)[stage]
    return column_texts(stage, raw, text_field)


def column_texts(stage: str, ds: Any, text_field: str) -> list[str]:
    """The `text_field` column of a split, checked: a column that exists, rows with text."""
    check_columns({stage: ds}, {"text_field": text_field})
    texts = cells(ds, text_field)
    check_texts(stage, "text_field", texts)
    return texts


def pack(streams: Sequence[Sequence[int]], eos_id: int) -> torch.Tensor:
    """Documents' ids joined into one stream, each document followed by EOS."""
    ids: list[int] = []
    for doc in streams:
        ids.extend(doc)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.long)


def blocks(
    stream: torch.Tensor, block_size: int, bos_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-id labels of every whole block of a stream, [n, block_size] each.

    With `bos_id` (a tokenizer that starts every text with BOS, as Gemma's does: without it
    Gemma-3 reads text as garbage), each block's input starts with BOS and its labels are
    the block's own stream tokens, the first one predicted from BOS alone.
    """
    if bos_id is None:
        n = (len(stream) - 1) // block_size
        windows = stream[(torch.arange(n) * block_size)[:, None] + torch.arange(block_size + 1)]
        return windows[:, :-1], windows[:, 1:]
    n = len(stream) // block_size
    windows = stream[(torch.arange(n) * block_size)[:, None] + torch.arange(block_size)]
    bos = torch.full((n, 1), bos_id, dtype=stream.dtype)
    return torch.cat([bos, windows[:, :-1]], dim=1), windows


class LMTextDataModule(HFTextDataModule):
    """Packed blocks of text, tokenised with `data.tokenizer`, for causal language modelling.

    `source`: the `TextSource` keys (`corpus`, `train_file`, `val_file`, `test_file`,
    `dataset_name`, `dataset_config`, `split_names`, `val_fraction`, `test_fraction`,
    `n_train`, `n_val`, `n_test`, `cache_dir`), as flat `data.*` keys; `n_*` count blocks.
    """

    SOURCES = LM_SOURCES

    def __init__(
        self,
        tokenizer: str,
        text_field: str = "text",
        block_size: int = 128,
        batch_size: int = 8,
        seed: int = 0,
        num_workers: int = 0,
        vocab_size: int | None = None,
        **source: Any,
    ) -> None:
        super().__init__()
        self.read_source(source, val_fraction=0.05, test_fraction=0.05)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
            raise ConfigError(f"data.block_size must be an integer >= 2, got {block_size!r}.")
        self.splits: dict[str, TensorDictDataset] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def documents(self) -> dict[str, list[str]]:
        """Documents per stage; a stage the source lacks is missing from the dict."""
        src, field = self.source, self.hparams.text_field
        if src.corpus:
            return {"train": [corpus_text(src.corpus)]}
        with quiet_datasets():
            if src.train_file:
                return {
                    stage: read_documents(stage, path, field, src.cache_dir)
                    for stage, path in src.files.items()
                    if path
                }
            loaded = src.load()
            names = stage_splits(loaded.raw, loaded.stage_names)
            return {
                stage: column_texts(stage, loaded.raw[names[stage]], field)
                for stage in STAGES
                if names[stage] in loaded.raw
            }

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # built once; fit then test reuses the same splits
            return
        hp = self.hparams
        tokenizer = self.tokenizer
        streams = {}
        for name, docs in self.documents().items():
            ids = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]
            streams[name] = pack(ids, tokenizer.eos_token_id)
        streams.update(self._carve(streams))
        bos_id = next(iter(default_bos(tokenizer)), None)  # each block starts as a text would
        rng = torch.Generator().manual_seed(hp.seed)  # never the global RNG
        for name in STAGES:
            if len(streams[name]) < hp.block_size + 1:
                raise ConfigError(
                    f"the {name} split holds {len(streams[name])} tokens, fewer than "
                    f"data.block_size + 1 = {hp.block_size + 1}; give more text or lower "
                    "data.block_size."
                )
            inputs, labels = blocks(streams[name], hp.block_size, bos_id)
            limit = self.source.limits[name]
            if limit is not None and limit < len(inputs):  # a seeded subset of whole blocks
                keep = torch.randperm(len(inputs), generator=rng)[:limit].sort().values
                inputs, labels = inputs[keep], labels[keep]
            self.splits[name] = TensorDictDataset(input_ids=inputs, labels=labels)
        sizes = {name: len(ds) for name, ds in self.splits.items()}
        log.info("lm text: blocks of %d tokens per split %s", hp.block_size, sizes)

    def _carve(self, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Val and test streams the source lacks, cut off the end of the train stream
        (train, then val, then test), and what is left of train."""
        src = self.source
        fractions = {"val": src.val_fraction, "test": src.test_fraction}
        missing = [name for name in ("val", "test") if name not in streams]
        for name in missing:
            if not 0 < fractions[name] < 1:
                raise ConfigError(
                    f"the text has no {name} split and data.{name}_fraction={fractions[name]}; "
                    f"give data.{name}_file or set data.{name}_fraction in (0, 1)."
                )
        if sum(fractions[name] for name in missing) >= 1:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction must stay below 1 to leave training "
                f"text, got {src.val_fraction} + {src.test_fraction}."
            )
        train, carved = streams["train"], {}
        end = len(train)
        for name in reversed(missing):  # test is the last region, val the one before it
            size = round(len(train) * fractions[name])
            carved[name], end = train[end - size : end], end - size
        carved["train"] = train[:end]
        return carved

    def sample_prompt(self, n_tokens: int = 16) -> str:
        """A fixed prompt in the style of this text: the start of the validation split."""
        self.setup()
        return self.tokenizer.decode(self.splits["val"][0]["input_ids"][:n_tokens])

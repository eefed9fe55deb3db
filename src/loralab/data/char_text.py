"""Character-level language-modelling data: fixed-length windows of one text.

The text is a bundled corpus (`data.corpus=a|b`, see corpora.py) or the user's own file
(`data.path=...`). It is cut into three contiguous regions (train, then val, then test), so
no validation character was ever a training target. A batch is
`{"input_ids": [B, T], "labels": [B, T]}` with labels = inputs shifted by one character.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from loralab.data.base import SplitDataModule
from loralab.data.char_tokenizer import FORMAT, CharTokenizer
from loralab.data.corpora import corpus_text
from loralab.data.dataset import TensorDictDataset
from loralab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def load_text(corpus: str = "a", path: str | os.PathLike | None = None) -> str:
    """The user's file if `path` is set, else the bundled corpus."""
    if not path:
        return corpus_text(corpus)
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingFileError(
            f"data.path: no text file at {file}; pass an existing UTF-8 file, or set "
            "data.path=null to use the bundled corpus data.corpus=a|b."
        )
    return decode_text(file.read_bytes(), file)


def decode_text(data: bytes, file: Path) -> str:
    """The file's text; bytes that are not UTF-8, or a NUL (binary data), fail by offset.

    Decoding with replacement would train on U+FFFD characters the user never wrote.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1]
        raise ConfigError(
            f"data.path: {file} is not UTF-8 text (byte {bad!r} at offset {error.start}, line "
            f"{line_of(data, error.start)}); pass a UTF-8 text file (re-save it as UTF-8)."
        ) from None
    if "\x00" in text:
        offset = data.index(b"\x00")
        raise ConfigError(
            f"data.path: {file} holds a NUL byte at offset {offset} (line "
            f"{line_of(data, offset)}), so it is binary data, not text; pass a UTF-8 text file."
        )
    return text


def line_of(data: bytes, offset: int) -> int:
    """The 1-based line of the byte at `offset`."""
    return data.count(b"\n", 0, offset) + 1


def build_tokenizer(tokenizer: str | None, corpus: str, path: str | None) -> CharTokenizer:
    """The vocabulary a run uses: a saved tokenizer file, or (None) the text's own characters."""
    if tokenizer:
        return CharTokenizer.load(tokenizer)
    return CharTokenizer.from_text(load_text(corpus, path))


def vocab_size_of(tokenizer: str | None, corpus: str, path: str | None) -> int | None:
    """Config resolver `${char_vocab_size:...}`: the model's vocab_size before any data loads.

    None when the vocabulary can't be read yet (no pretrained tokenizer, bad path), so that a
    config still composes; building the datamodule then fails with the sentence that says why.
    """
    try:
        return build_tokenizer(tokenizer, corpus, path).vocab_size
    except (OSError, ValueError):
        return None


def split_bounds(n: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """[start, end) of each split's region of an n-token text: train, then val, then test."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be "
            "in (0, 1) with a sum below 1; e.g. set both to 0.05."
        )
    train_end = round(n * (1 - val_fraction - test_fraction))
    val_end = round(n * (1 - test_fraction))
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n)}


def window_starts(
    length: int, window: int, count: int | None, rng: torch.Generator | None
) -> Tensor:
    """Offsets of `count` windows in a region: random if `rng` is given, else evenly spaced.

    count=None takes every non-overlapping window, i.e. the whole region once.
    """
    last = length - window  # the last offset whose window still fits
    if count is None:
        return torch.arange(0, last + 1, window)
    if rng is not None:
        return torch.randint(0, last + 1, (count,), generator=rng)
    return torch.linspace(0, last, count).round().long()


class CharTextDataModule(SplitDataModule):
    """Next-character prediction windows of a text, encoded with a fixed vocabulary."""

    def __init__(
        self,
        corpus: str = "a",
        path: str | None = None,
        tokenizer: str | None = None,
        save_tokenizer: str | None = None,
        vocab_size: int | None = None,
        seq_len: int = 64,
        n_train: int | None = 4000,
        n_val: int | None = None,
        n_test: int | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        batch_size: int = 32,
        seed: int = 1234,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.text = load_text(corpus, path)
        self._tokenizer = build_tokenizer(tokenizer, corpus, path)
        if vocab_size is not None and vocab_size != self.tokenizer.vocab_size:
            raise ConfigError(
                f"data.vocab_size={vocab_size} does not match the tokenizer's "
                f"{self.tokenizer.vocab_size} ids; leave data.vocab_size to its resolver."
            )
        self.bounds = split_bounds(len(self.text), val_fraction, test_fraction)
        for split, (start, end) in self.bounds.items():
            if end - start < seq_len + 1:
                raise ConfigError(
                    f"the {split} split holds {end - start} characters, fewer than "
                    f"data.seq_len + 1 = {seq_len + 1}; use a longer text or lower data.seq_len."
                )
        self.splits: dict[str, TensorDictDataset] = {}

    @property
    def tokenizer(self) -> CharTokenizer:
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.vocab_size

    def prepare_data(self) -> None:
        """Pretraining writes its vocabulary beside the backbone, for every later fine-tune."""
        if self.hparams.save_tokenizer:
            path = self.tokenizer.save(self.hparams.save_tokenizer)
            log.info("saved the tokenizer (%d ids) to %s", self.tokenizer.vocab_size, path)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        rng = torch.Generator().manual_seed(hp.seed)  # never the global RNG
        counts = {"train": hp.n_train, "val": hp.n_val, "test": hp.n_test}
        for split in SPLITS:
            start, end = self.bounds[split]
            ids = self.tokenizer.encode(self.text[start:end])
            # windows of seq_len + 1: inputs are the first seq_len, labels the last seq_len
            window = hp.seq_len + 1
            starts = window_starts(
                len(ids), window, counts[split], rng if split == "train" else None
            )
            windows = ids[starts[:, None] + torch.arange(window)]  # [n, window]
            self.splits[split] = TensorDictDataset(input_ids=windows[:, :-1], labels=windows[:, 1:])

    def sample_prompt(self, n_chars: int = 40) -> str:
        """A fixed prompt in the style of this text: the start of its validation region."""
        start, _ = self.bounds["val"]
        return self.text[start : start + n_chars]

    # The vocabulary travels inside every Lightning checkpoint of the run.
    def state_dict(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("tokenizer", {})
        if saved.get("format") == FORMAT and saved.get("chars") != self.tokenizer.chars:
            raise ConfigError(
                "the checkpoint was trained with another vocabulary than data.tokenizer gives "
                "now; point data.tokenizer at the tokenizer file of the run's pretraining."
            )

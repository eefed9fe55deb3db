"""The base of the data modules that read a `TextSource` with a Hugging Face tokenizer.

Text classification, instruction tuning and packed LM text differ in what they make of the
rows; they share where the rows come from (`self.source`, from the flat `data.*` keys), the
tokenizer (`data.tokenizer`, loaded once by `hf_tokenizer.load_tokenizer`), the bundled
files written before the first read (`data.write_files`), and, for causal LMs, the
tokenizer's identity in every checkpoint.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from loralab.data.base import SplitDataModule
from loralab.data.hf_tokenizer import check_tokenizer_state, load_tokenizer, tokenizer_state
from loralab.data.text_source import TABLE_SOURCES, TextSource


class HFTextDataModule(SplitDataModule):
    """Rows of a `TextSource`, tokenised with `data.tokenizer`."""

    # the kinds of source the data module reads (the one-source check lists them)
    SOURCES: Mapping[str, str] = TABLE_SOURCES
    # causal LM data ends documents and answers with EOS; a classifier's tokenizer may lack it
    NEEDS_EOS = True

    source: TextSource
    write_files: Callable[[], Any] | None = None
    _tokenizer: Any = None

    def read_source(
        self, keys: Mapping[str, Any], ignore: Sequence[str] = (), **defaults: Any
    ) -> None:
        """Save the calling `__init__`'s arguments as hyper-parameters (but `ignore`), check
        the `data.*` keys of the source and record every one of them too (defaults included),
        as when they were parameters of each data module."""
        caller = inspect.currentframe()
        self.save_hyperparameters(ignore=list(ignore), frame=caller.f_back if caller else None)
        self.source = TextSource.from_keys(keys, type(self).__name__, self.SOURCES, **defaults)
        self.save_hyperparameters({**self.hparams, **self.source.settings(self.SOURCES)})

    @property
    def tokenizer(self) -> Any:
        """`data.tokenizer`, loaded once (a pad token is borrowed from EOS if missing)."""
        if self._tokenizer is None:
            hp = self.hparams
            self._tokenizer = load_tokenizer(hp.tokenizer, hp.vocab_size, self.NEEDS_EOS)
        return self._tokenizer

    def prepare_data(self) -> None:
        # runs on one process: writes the bundled dataset if its files are missing
        if self.write_files is not None:
            self.write_files()

    # The tokenizer's identity travels inside every checkpoint of the run.
    def state_dict(self) -> dict[str, Any]:
        return tokenizer_state(self.tokenizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_tokenizer_state(state, self.tokenizer)

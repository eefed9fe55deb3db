"""A character-level tokenizer whose vocabulary is fixed by the pretraining corpus.

Fine-tuning must read text with the pretrained model's vocabulary (id 17 has to mean the
character it meant in pretraining), so the tokenizer is saved as a JSON file beside the
pretrained backbone and loaded, never rebuilt, for fine-tuning. Characters the pretraining
corpus never showed map to one unknown id, with a warning, instead of crashing the run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from loralab.errors import ConfigError, MissingFileError
from loralab.io import write_json

log = logging.getLogger(__name__)

FORMAT = "loralab.char_tokenizer"
# the tokenizer `make pretrain-charlm` writes into checkpoints/
MAKE_TOKENIZER = "tiny_gpt.tokenizer.json"
UNK_ID = 0
# what an unknown id decodes to: the Unicode replacement character
UNK_TEXT = "\ufffd"


class CharTokenizer:
    """One id per character seen when the vocabulary was built; id 0 is "unknown"."""

    def __init__(self, chars: Iterable[str]) -> None:
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("a CharTokenizer vocabulary is a list of distinct single characters")
        self.chars = chars
        self.char_to_id = {c: i + 1 for i, c in enumerate(chars)}  # 0 is reserved for unknown
        self._warned: set[frozenset[str]] = set()

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The vocabulary of a corpus: its distinct characters, sorted so it is reproducible."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> Tensor:
        """Text -> a 1-D long tensor of ids; unseen characters become UNK_ID (warned once)."""
        lookup = self.char_to_id
        ids = [lookup.get(c, UNK_ID) for c in text]
        if UNK_ID in ids:
            self._warn_unknown({c for c in text if c not in lookup})
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids -> text; the unknown id (and any id outside the vocabulary) reads as U+FFFD."""
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        chars, n = self.chars, len(self.chars)
        return "".join(chars[i - 1] if 0 < i <= n else UNK_TEXT for i in values)

    def _warn_unknown(self, unknown: set[str]) -> None:
        key = frozenset(unknown)
        if key in self._warned:
            return  # a long text would otherwise repeat the same warning for every window
        self._warned.add(key)
        shown = "".join(sorted(unknown))[:40]
        log.warning(
            "%d character(s) are not in the tokenizer's vocabulary and map to the unknown id: "
            "%r; the pretraining corpus never showed them.",
            len(unknown),
            shown,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "unk_id": UNK_ID, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "tokenizer") -> CharTokenizer:
        if data.get("format") != FORMAT or not isinstance(data.get("chars"), list):
            raise ConfigError(
                f"data.tokenizer: {source} is not a loralab character tokenizer file; point "
                "data.tokenizer at the .tokenizer.json a character pretraining run wrote "
                "beside its backbone."
            )
        return cls(data["chars"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON, atomically (a reader never sees half a file)."""
        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        path = Path(path)
        if not path.is_file():
            made_by_make = path.name == MAKE_TOKENIZER and path.parent.name == "checkpoints"
            fix = (
                "run `make pretrain-charlm` first (it saves the pretraining vocabulary there)"
                if made_by_make
                else "point it at the .tokenizer.json a pretraining run wrote"
            )
            raise MissingFileError(
                f"data.tokenizer: no tokenizer file at {path}; {fix}, or set "
                "data.tokenizer=null to build the vocabulary from this text."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = {}
        return cls.from_dict(data if isinstance(data, dict) else {}, str(path))


def tokenizer_path_for(backbone_path: str | os.PathLike) -> Path:
    """Where a backbone file's tokenizer lives: checkpoints/x.safetensors -> x.tokenizer.json."""
    path = Path(backbone_path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".tokenizer.json")

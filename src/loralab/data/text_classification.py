"""Text classification from your own files or a dataset, tokenised with the backbone's tokenizer.

Batches are dicts of `input_ids`, `attention_mask` (+ `token_type_ids` for sentence pairs)
and `labels`, padded per batch to its longest sequence, exactly the keyword arguments a
Hugging Face classifier takes; the tiny encoder takes them too (single sentences have no
`token_type_ids`: BERT's default of all zeros is what the tokenizer would give).

String labels are mapped to ids (`data.label_names` in that order, else sorted); the mapping
is part of the data module's state, so it is saved in every checkpoint and checked on load.
Tokenised splits are cached by `datasets`, keyed by the data, the tokenizer and the settings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from loralab import compat
from loralab.data import rows
from loralab.data import text_checks as checks
from loralab.data.hf_text import HFTextDataModule
from loralab.data.text_source import CARVE_SEED, quiet_datasets, source_splits
from loralab.errors import ConfigError
from loralab.io import to_plain

log = logging.getLogger(__name__)


class PadToLongest:
    """DataLoader collate: pad a list of tokenised rows into one plain dict of tensors."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        # a plain dict, like our other data modules yield (and the resource monitor reads)
        return dict(self.pad(rows))


class TextClassificationDataModule(HFTextDataModule):
    """Train/val/test text classification splits from local files or `dataset_name`.

    `source`: the `TextSource` keys (`train_file`, `val_file`, `test_file`, `dataset_name`,
    `dataset_config`, `split_names`, `val_fraction`, `test_fraction`, `n_train`, `n_val`,
    `n_test`, `cache_dir`), as flat `data.*` keys.
    """

    NEEDS_EOS = False  # an encoder's tokenizer (BERT, MiniLM) has no EOS

    def __init__(
        self,
        tokenizer: str,
        num_classes: int,
        text_field: str = "text",
        text_pair_field: str | None = None,
        label_field: str = "label",
        label_names: Sequence[str] | None = None,
        max_seq_len: int = 128,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
        vocab_size: int | None = None,
        write_files: Callable[[], Any] | None = None,
        keep_rows: Mapping[str, Any] | None = None,
        dedupe: bool = False,
        split_seed: int = CARVE_SEED,
        **source: Any,
    ) -> None:
        super().__init__()
        # plain containers, not Hydra's DictConfig: checkpoints must load with weights_only
        label_names, keep_rows = to_plain(label_names), to_plain(keep_rows)
        self.read_source(source, ignore=["write_files"])
        self.write_files = write_files
        self.splits: dict[str, Any] = {}
        self.label_names: list[str] | None = None
        self._collator: Any = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # built once; fit then test reuses the same splits
            return
        self.prepare_data()  # cheap when done; lets setup() alone work, as tests call it
        hp = self.hparams
        with quiet_datasets():
            loaded = self.source.load()
            raw, origins = loaded.raw, loaded.origins
            splits = self.source.pick(loaded, hp.split_seed)
            fields = {
                "text_field": hp.text_field,
                "text_pair_field": hp.text_pair_field,
                "label_field": hp.label_field,
            }
            checks.check_columns(splits, fields)
            self.label_names = checks.label_names_of(
                splits, hp.label_field, hp.label_names, hp.num_classes
            )
            used = {split: raw[split] for split in source_splits(raw, loaded.stage_names)}
            # rows are checked where the user can find them: in their file, in its own order
            checks.check_rows(
                {origins[split]: ds for split, ds in used.items()},
                fields,
                self.label_names,
                hp.num_classes,
            )
            if hp.keep_rows or hp.dedupe:  # chosen from the checked rows, before carving
                texts = [field for field in (hp.text_field, hp.text_pair_field) if field]
                chosen = rows.select_rows(used, origins, hp.keep_rows, texts if hp.dedupe else None)
                splits = self.source.pick(dataclasses.replace(loaded, raw=chosen), hp.split_seed)
            self.splits = {stage: self._encode(stage, ds) for stage, ds in splits.items()}
        sizes = {stage: len(ds) for stage, ds in self.splits.items()}
        log.info("text data: %s rows, labels %s", sizes, self.label_names or "as ids")

    def _encode(self, stage: str, ds: Any) -> Any:
        """Checked, subsampled, tokenised and labelled rows of one split (cached on disk)."""
        from datasets.fingerprint import Hasher

        hp = self.hparams
        ds = self.source.cap(stage, ds, hp.seed, shuffle=True)

        tokenizer, names = self.tokenizer, self.label_names
        index = {name: i for i, name in enumerate(names)} if names is not None else {}
        # token type ids only matter for pairs; single sentences leave them to the model
        with_types = (
            hp.text_pair_field is not None and "token_type_ids" in tokenizer.model_input_names
        )

        def tokenize(rows: dict[str, list]) -> dict[str, list]:
            pairs = rows[hp.text_pair_field] if hp.text_pair_field is not None else None
            encoded = tokenizer(
                rows[hp.text_field],
                pairs,
                truncation=True,
                max_length=hp.max_seq_len,
                return_token_type_ids=with_types,
            )
            labels = [index.get(label, label) for label in rows[hp.label_field]]
            return {**encoded, "labels": labels}

        settings = [compat.dataset_fingerprint(ds), tokenizer.name_or_path, len(tokenizer), names]
        settings.append(json.dumps(dict(hp), sort_keys=True, default=str))
        return ds.map(
            tokenize,
            batched=True,
            remove_columns=ds.column_names,
            new_fingerprint=Hasher.hash(settings),
            desc=f"tokenising {stage}",
        )

    @property
    def collate_fn(self) -> PadToLongest:
        """Pads each batch to its longest row: short sentences cost short sequences."""
        if self._collator is None:
            self._collator = PadToLongest(self.tokenizer)
        return self._collator

    # The label mapping travels with every checkpoint (Lightning saves the data module state);
    # the tokenizer is the backbone's, checked by the run builder.
    def state_dict(self) -> dict[str, Any]:
        return {"label_names": self.label_names}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("label_names")
        if self.label_names is not None and saved is not None and saved != self.label_names:
            raise ConfigError(
                f"the checkpoint was trained with labels {saved} but this data maps labels as "
                f"{self.label_names}; set data.label_names={saved}."
            )
        self.label_names = saved if self.label_names is None else self.label_names

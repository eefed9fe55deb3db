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

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from loralab.data import rows
from loralab.data import text_source as source
from loralab.data.base import SplitDataModule
from loralab.errors import ConfigError

log = logging.getLogger(__name__)


def plain(value: Any) -> Any:
    """A DictConfig / ListConfig as a dict / list; anything else as it is."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class PadToLongest:
    """DataLoader collate: pad a list of tokenised rows into one plain dict of tensors."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        # a plain dict, like our other data modules yield (and the resource monitor reads)
        return dict(self.pad(rows))


class TextClassificationDataModule(SplitDataModule):
    """Train/val/test text classification splits from local files or `dataset_name`."""

    def __init__(
        self,
        tokenizer: str,
        num_classes: int,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        dataset_name: str | None = None,
        dataset_config: str | None = None,
        split_names: Mapping[str, str] | None = None,
        text_field: str = "text",
        text_pair_field: str | None = None,
        label_field: str = "label",
        label_names: Sequence[str] | None = None,
        max_seq_len: int = 128,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        n_train: int | None = None,
        n_val: int | None = None,
        n_test: int | None = None,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
        vocab_size: int | None = None,
        write_files: Callable[[], Any] | None = None,
        cache_dir: str | None = None,
        keep_rows: Mapping[str, Any] | None = None,
        dedupe: bool = False,
        split_seed: int = source.CARVE_SEED,
    ) -> None:
        super().__init__()
        # plain containers, not Hydra's DictConfig: checkpoints must load with weights_only
        split_names, label_names = plain(split_names), plain(label_names)
        keep_rows = plain(keep_rows)
        self.save_hyperparameters(ignore=["write_files"])
        if (train_file is None) == (dataset_name is None):
            raise ConfigError(
                "give exactly one of data.train_file (a local CSV/JSONL/Parquet file) and "
                "data.dataset_name (a hub id or a local dataset folder); set the other to null."
            )
        self.write_files = write_files
        self.limits = {"train": n_train, "val": n_val, "test": n_test}
        self.splits: dict[str, Any] = {}
        self.label_names: list[str] | None = None
        self._tokenizer: Any = None
        self._collator: Any = None

    @property
    def tokenizer(self) -> Any:
        """The backbone's tokenizer, loaded once (a pad token is borrowed from EOS if missing)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(self.hparams.tokenizer))
            if tokenizer.pad_token is None:  # decoder-only tokenizers often have none
                tokenizer.pad_token = tokenizer.eos_token
            vocab = self.hparams.vocab_size
            if vocab is not None and len(tokenizer) > vocab:
                raise ConfigError(
                    f"data.vocab_size={vocab} is smaller than the vocabulary of data.tokenizer "
                    f"({len(tokenizer)} tokens); set data.vocab_size={len(tokenizer)}."
                )
            self._tokenizer = tokenizer
        return self._tokenizer

    def prepare_data(self) -> None:
        # runs on one process: writes the bundled dataset if its files are missing
        if self.write_files is not None:
            self.write_files()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # built once; fit then test reuses the same splits
            return
        self.prepare_data()  # cheap when done; lets setup() alone work, as tests call it
        hp = self.hparams
        with source.quiet_datasets():
            if hp.train_file is not None:
                files = {"train": hp.train_file, "val": hp.val_file, "test": hp.test_file}
                raw = source.load_files(files, hp.cache_dir)
                stage_names = {stage: stage for stage in source.STAGES}
                origins = {stage: f"data.{stage}_file={files[stage]}" for stage in raw}
            else:
                raw = source.load_named(hp.dataset_name, hp.dataset_config, hp.cache_dir)
                stage_names = dict(hp.split_names or {})
                origins = {
                    split: f"split {split!r} of data.dataset_name={hp.dataset_name}"
                    for split in raw
                }
            carve = (hp.val_fraction, hp.test_fraction, hp.split_seed)
            splits = source.pick_splits(raw, stage_names, *carve)
            fields = {
                "text_field": hp.text_field,
                "text_pair_field": hp.text_pair_field,
                "label_field": hp.label_field,
            }
            source.check_columns(splits, fields)
            self.label_names = source.label_names_of(
                splits, hp.label_field, hp.label_names, hp.num_classes
            )
            # rows are checked where the user can find them: in their file, in its own order
            source.check_rows(
                {origins[split]: raw[split] for split in source.source_splits(raw, stage_names)},
                fields,
                self.label_names,
                hp.num_classes,
            )
            if hp.keep_rows or hp.dedupe:  # chosen from the checked rows, before carving
                used = {split: raw[split] for split in source.source_splits(raw, stage_names)}
                texts = [field for field in (hp.text_field, hp.text_pair_field) if field]
                raw = rows.select_rows(used, origins, hp.keep_rows, texts if hp.dedupe else None)
                splits = source.pick_splits(raw, stage_names, *carve)
            self.splits = {stage: self._encode(stage, ds) for stage, ds in splits.items()}
        sizes = {stage: len(ds) for stage, ds in self.splits.items()}
        log.info("text data: %s rows, labels %s", sizes, self.label_names or "as ids")

    def _encode(self, stage: str, ds: Any) -> Any:
        """Checked, subsampled, tokenised and labelled rows of one split (cached on disk)."""
        from datasets.fingerprint import Hasher

        hp = self.hparams
        limit = self.limits[stage]
        if limit is not None and limit < len(ds):
            ds = ds.shuffle(seed=hp.seed).select(range(limit))

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

        settings = [ds._fingerprint, tokenizer.name_or_path, len(tokenizer), names]
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

    # The label mapping travels with every checkpoint (Lightning saves the data module state).
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

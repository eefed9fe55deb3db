"""One text source for the three text data modules, and the bundled writers' write_once."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from loralab.data import InstructDataModule, LMTextDataModule, TextClassificationDataModule
from loralab.data.bundled.write_once import write_once
from loralab.errors import ConfigError

SOURCE_KEYS = {
    "train_file", "val_file", "test_file", "dataset_name", "dataset_config", "split_names",
    "val_fraction", "test_fraction", "n_train", "n_val", "n_test", "cache_dir",
}  # fmt: skip


def test_every_source_key_is_a_hyper_parameter_with_its_default():
    text = TextClassificationDataModule(tokenizer="x", num_classes=2, train_file="a.csv")
    lm = LMTextDataModule(tokenizer="x", corpus="b", n_train=5)
    split_names = OmegaConf.create({"train": "train", "val": "dev"})
    instruct = InstructDataModule(tokenizer="x", dataset_name="d", split_names=split_names)
    assert SOURCE_KEYS <= set(text.hparams) and "corpus" not in text.hparams
    assert SOURCE_KEYS | {"corpus"} <= set(lm.hparams)
    assert (text.hparams.val_fraction, text.hparams.n_test) == (0.1, None)
    assert (lm.hparams.val_fraction, lm.hparams.test_fraction, lm.hparams.n_train) == (
        0.05,
        0.05,
        5,
    )
    assert lm.hparams_initial.corpus == "b"  # what loggers record
    # plain containers, so checkpoints load with weights_only
    assert type(instruct.hparams.split_names) is dict
    assert instruct.source.split_names == {"train": "train", "val": "dev"}


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: TextClassificationDataModule(
                tokenizer="x", num_classes=2, dataset_name="d", train_file="a"
            ),
            r"exactly one of data.train_file \(a local CSV/JSONL/Parquet file\) and data.dataset_name .* \(given: train_file, dataset_name\)",
        ),
        (
            lambda: LMTextDataModule(tokenizer="x"),
            r"exactly one text source: .* or data.corpus \(.*\), and set the others to null \(given: none\)",
        ),
        (
            lambda: InstructDataModule(tokenizer="x", train_file="a", trian_file="b"),
            r"data.trian_file is not a setting of InstructDataModule; remove it",
        ),
        (  # a corpus is LM text's alone
            lambda: TextClassificationDataModule(tokenizer="x", num_classes=2, corpus="b"),
            r"data.corpus is not a setting of TextClassificationDataModule",
        ),
    ],
    ids=["two-sources", "no-source", "unknown-key", "corpus-for-classification"],
)
def test_a_bad_source_fails_in_one_sentence_naming_the_keys(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_write_once_skips_current_files_and_never_leaves_half_a_dataset(tmp_path):
    files = {"train": "train.txt", "test": "test.txt"}
    calls = []

    def generate():
        calls.append(1)
        return {"train": "a\n", "test": "b\n"}, {"rows": 2}

    paths = write_once(tmp_path, files, {"version": 1}, generate)
    assert paths["train"].read_text() == "a\n"
    assert json.loads((tmp_path / "meta.json").read_text()) == {"version": 1, "rows": 2}
    write_once(tmp_path, files, {"version": 1}, generate)
    assert len(calls) == 1  # current: nothing generated, nothing written

    def crash():
        raise RuntimeError("killed while generating")

    with pytest.raises(RuntimeError):
        write_once(tmp_path, files, {"version": 2}, crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "test.txt", "train.txt"]
    write_once(tmp_path, files, {"version": 2}, generate)  # a stale stamp: rewritten
    assert len(calls) == 2
    assert json.loads((tmp_path / "meta.json").read_text())["version"] == 2

"""Text classification data: the bundled generator, CSV/JSONL/Parquet/dataset-folder loading,
label mapping, dynamic padding, and one clear sentence for every kind of bad data."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("datasets")
pytest.importorskip("transformers")

from loralab.data import TextClassificationDataModule  # noqa: E402
from loralab.data.bundled.reviews import ADJECTIVES, VERBS, ensure_text_dataset  # noqa: E402
from loralab.errors import ConfigError  # noqa: E402
from loralab.models.hf import minilm_path  # noqa: E402

ROWS = [
    ("a lovely quiet room", "positive"),
    ("the soup was cold", "negative"),
    ("friendly staff and a great view of the old harbour at sunset", "positive"),
    ("never again", "negative"),
    ("it was fine", "neutral"),
    ("the bed was not comfortable", "negative"),
]


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def datamodule(tmp_path: Path, **kwargs) -> TextClassificationDataModule:
    settings = {
        "tokenizer": minilm_path(),
        "num_classes": 3,
        "batch_size": 4,
        "cache_dir": str(tmp_path / "cache"),
        **kwargs,
    }
    return TextClassificationDataModule(**settings)


def every_split(path: Path | str) -> dict[str, str]:
    """One file as train, val and test: enough to exercise loading without carving."""
    return {f"{stage}_file": str(path) for stage in ("train", "val", "test")}


def files_of(bundled: dict[str, Path]) -> dict[str, str]:
    return {
        "train_file": str(bundled["train"]),
        "val_file": str(bundled["validation"]),
        "test_file": str(bundled["test"]),
    }


def first_batch(dm: TextClassificationDataModule, stage: str = "train") -> dict:
    dm.setup("fit")
    loader = dm.loader(stage, shuffle=False)
    return next(iter(loader))


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ensure_text_dataset(
        tmp_path_factory.mktemp("reviews"), n_train=400, n_val=100, n_test=100
    )


def sentiment_words(held_out: bool) -> set[str]:
    lists = [table[label][int(held_out)] for table in (ADJECTIVES, VERBS) for label in table]
    return {word for words in lists for word in words if " " not in word}


def test_the_bundled_dataset_is_seeded_balanced_and_tests_unseen_words(bundled, tmp_path):
    again = ensure_text_dataset(tmp_path, n_train=400, n_val=100, n_test=100)
    for split, path in bundled.items():
        assert path.read_bytes() == again[split].read_bytes()  # same seed, same files
    rows = {split: list(csv.DictReader(path.open())) for split, path in bundled.items()}
    assert [len(rows[s]) for s in ("train", "validation", "test")] == [400, 100, 100]
    for split_rows in rows.values():
        assert sum(r["label"] == "positive" for r in split_rows) == len(split_rows) // 2
    texts = {split: {r["text"] for r in split_rows} for split, split_rows in rows.items()}
    assert not texts["train"] & texts["test"] and not texts["validation"] & texts["test"]

    def words(split: str) -> set[str]:
        return {w for t in texts[split] for w in re.findall(r"[a-z-]+", t.lower())}

    # the words that carry the sentiment in val/test never occur in training
    assert not words("train") & sentiment_words(held_out=True)
    assert words("test") & sentiment_words(held_out=True)
    assert not words("test") & sentiment_words(held_out=False)


def test_csv_jsonl_and_parquet_give_the_same_batches(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "train.parquet")
    batches = []
    for suffix in ("csv", "jsonl", "parquet"):
        batches.append(
            first_batch(datamodule(tmp_path, **every_split(tmp_path / f"train.{suffix}")))
        )
    for batch in batches[1:]:
        assert batch.keys() == batches[0].keys() == {"input_ids", "attention_mask", "labels"}
        for key in batch:
            assert batch[key].equal(batches[0][key])


def test_string_labels_follow_label_names_and_travel_in_the_state(tmp_path):
    files = every_split(write_csv(tmp_path / "d.csv", ROWS))
    dm = datamodule(tmp_path, **files, label_names=["negative", "neutral", "positive"])
    batch = first_batch(dm)
    assert batch["labels"].tolist() == [2, 0, 2, 0]
    assert dm.state_dict() == {"label_names": ["negative", "neutral", "positive"]}
    # padded to the longest row of this batch, not to max_seq_len
    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) < dm.hparams.max_seq_len
    with pytest.raises(ConfigError, match="data.label_names"):
        dm.load_state_dict({"label_names": ["positive", "neutral", "negative"]})

    default = datamodule(tmp_path, **files)  # no label_names: sorted
    default.setup("fit")
    assert default.label_names == ["negative", "neutral", "positive"]


def test_sentence_pairs_get_token_type_ids(tmp_path):
    pairs = [("a cat sat", "a cat was sitting", 1), ("it rains", "the sun is out", 0)] * 2
    path = write_csv(tmp_path / "pairs.csv", pairs, header=("first", "second", "label"))
    files = every_split(path)
    batch = first_batch(
        datamodule(tmp_path, **files, text_field="first", text_pair_field="second", num_classes=2)
    )
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert batch["token_type_ids"][0].max() == 1  # the second sentence is marked


def test_missing_val_and_test_are_carved_out_of_train_the_same_way_every_time(bundled, tmp_path):
    sizes = []
    for seed in (1, 2):
        dm = datamodule(
            tmp_path,
            train_file=str(bundled["train"]),
            num_classes=2,
            val_fraction=0.1,
            test_fraction=0.2,
            seed=seed,
        )
        dm.setup("fit")
        sizes.append({stage: len(ds) for stage, ds in dm.splits.items()})
        test_ids = [row["input_ids"] for row in dm.splits["test"]]
        if seed == 1:
            first_test = test_ids
    assert sizes[0] == sizes[1] == {"train": 288, "val": 32, "test": 80}
    assert test_ids == first_test  # the run seed does not move rows between splits


def test_a_dataset_folder_loads_like_a_hub_dataset(bundled, tmp_path):
    import datasets

    by_name = datamodule(
        tmp_path, dataset_name=str(bundled["train"].parent), num_classes=2, n_train=8
    )
    by_name.setup("fit")
    assert {stage: len(ds) for stage, ds in by_name.splits.items()} == {
        "train": 8,
        "val": 100,
        "test": 100,
    }

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["good", "bad"] * 4, "label": [1, 0] * 4})}
    ).save_to_disk(str(saved))
    from_disk = datamodule(
        tmp_path, dataset_name=str(saved), num_classes=2, val_fraction=0.25, test_fraction=0.25
    )
    assert first_batch(from_disk)["labels"].max() <= 1


def test_the_bundled_files_are_written_when_missing(tmp_path):
    from functools import partial

    out = tmp_path / "gen"
    files = files_of({split: out / f"{split}.csv" for split in ("train", "validation", "test")})
    write_files = partial(ensure_text_dataset, out, n_train=40, n_val=10, n_test=10)
    dm = datamodule(tmp_path, **files, num_classes=2, write_files=write_files)
    dm.setup("fit")
    assert json.loads((out / "meta.json").read_text())["sizes"] == [40, 10, 10]
    assert len(dm.splits["val"]) == 10


def bad_file(tmp_path: Path, content: bytes, name: str = "bad.csv") -> dict[str, str]:
    path = tmp_path / name
    path.write_bytes(content)
    return every_split(path)


@pytest.mark.parametrize(
    ("files", "kwargs", "error", "key"),
    [
        ("missing", {}, FileNotFoundError, "data.train_file"),
        (b"sentence,label\nhi,positive\n", {}, ConfigError, "data.text_field"),
        (b"text,label\n", {}, ConfigError, "has no rows"),
        (b"text,label\nhi,0\nyo,7\n", {}, ConfigError, "data.num_classes=3"),
        (b"text,label\nhi,positive\nyo,negative\n", {}, ConfigError, "set data.num_classes=2"),
        (
            b"text,label\nhi,1\n\xff\xfe oops,0\n",
            {},
            ConfigError,
            "(byte b'\\xff' at offset 16, line 3)",
        ),
        (b"text,label\nhi,1\n,0\n", {}, ConfigError, "row 2 of data.train_file="),
        (
            b"text,label\nhi,1\n",
            {"train_file": None},
            ConfigError,
            "exactly one of data.train_file",
        ),
        (b"text,label\nhi,1\n", {"tokenizer_vocab": 100}, ConfigError, "data.vocab_size=100"),
    ],
    ids=[
        "missing-file",
        "missing-column",
        "empty-split",
        "label-out-of-range",
        "class-count",
        "undecodable",
        "empty-text",
        "no-source",
        "vocab",
    ],
)
def test_bad_data_fails_in_one_sentence_naming_the_key(tmp_path, files, kwargs, error, key):
    if files == "missing":
        settings = {"train_file": str(tmp_path / "nope.csv")}
    else:
        settings = bad_file(tmp_path, files)
    if "tokenizer_vocab" in kwargs:
        settings["vocab_size"] = kwargs.pop("tokenizer_vocab")
    settings.update(kwargs)
    with pytest.raises(error, match=re.escape(key)):
        datamodule(tmp_path, **settings).setup("fit")


def test_data_errors_name_the_row_and_byte_of_the_users_own_file(tmp_path):
    """Not the row of a shuffled, subsampled split, nor an offset in `datasets`' read buffer."""
    rows = [(f"review number {i}", i % 2) for i in range(60)]
    rows[39] = ("", 1)  # the 40th data row has no text
    path = write_csv(tmp_path / "mine.csv", rows)
    settings = {"train_file": str(path), "val_file": None, "test_file": None, "num_classes": 2}
    with pytest.raises(ConfigError, match=rf"row 40 of data\.train_file={re.escape(str(path))} "):
        datamodule(tmp_path, n_train=20, **settings).setup("fit")  # a shuffled subsample

    text = "".join(f"line {i} of a long review file,{i % 2}\n" for i in range(20_000))
    data = b"text,label\n" + text.encode()
    offset = len(data) - 40  # deep in the file, far past the reader's first block
    data = data[:offset] + b"\xff" + data[offset + 1 :]
    big = tmp_path / "big.csv"
    big.write_bytes(data)
    line = data[:offset].count(b"\n") + 1
    with pytest.raises(ConfigError) as info:
        datamodule(tmp_path, **{**settings, "train_file": str(big)}).setup("fit")
    assert str(info.value) == (
        f"data.train_file: {big} is not UTF-8 text (byte b'\\xff' at offset {offset}, line "
        f"{line}); re-save the file as UTF-8."
    )


def test_tokenised_splits_are_cached_on_disk_and_reused(bundled, tmp_path):
    def cache_files() -> list[str]:
        dm = datamodule(tmp_path, **files_of(bundled), num_classes=2)
        dm.setup("fit")
        return [f["filename"] for f in dm.splits["train"].cache_files]

    first = cache_files()
    assert first and all(Path(name).is_file() for name in first)
    assert cache_files() == first  # the same data, tokenizer and settings: the same cache

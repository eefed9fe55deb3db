"""Character-level data: the bundled corpora, the tokenizer, and the LM windows."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from loralab.data import CharTextDataModule
from loralab.data.char_text import vocab_size_of
from loralab.data.char_tokenizer import UNK_ID, UNK_TEXT, CharTokenizer, tokenizer_path_for
from loralab.data.corpora import corpus_text
from loralab.errors import ConfigError


def char_distribution_distance(x: str, y: str) -> float:
    """Total variation distance between the character frequencies of two texts (0..1)."""
    cx, cy = Counter(x), Counter(y)
    return 0.5 * sum(abs(cx[c] / len(x) - cy[c] / len(y)) for c in cx.keys() | cy.keys())


def test_bundled_corpora_are_large_deterministic_and_differ_in_style():
    a, b = corpus_text("a"), corpus_text("b")
    assert len(a.encode()) >= 200_000 and len(b.encode()) >= 200_000
    assert corpus_text.__wrapped__("a") == a  # rebuilt from scratch: the same text
    assert corpus_text.__wrapped__("a", seed=1) != a
    assert char_distribution_distance(a, b) > 0.1
    # b is a play: short lines in an old register; a is wrapped modern prose
    assert b.count("\n") / len(b) > 1.5 * a.count("\n") / len(a)
    for word in (" thou ", "'Tis ", " dost ", "[Exeunt.]"):
        assert word in b and word not in a
    # the pretraining vocabulary (corpus a) covers every character of corpus b
    assert set(b) <= set(a)


def test_unknown_corpus_names_the_key():
    with pytest.raises(ConfigError, match="data.corpus='c'"):
        corpus_text("c")


def test_tokenizer_round_trip_and_json_file(tmp_path):
    text = corpus_text("b")[:5000]
    tokenizer = CharTokenizer.from_text(corpus_text("a"))
    ids = tokenizer.encode(text)
    assert ids.dtype == torch.long and UNK_ID not in ids.tolist()
    assert tokenizer.decode(ids) == text
    path = tokenizer.save(tmp_path / "tok.json")
    loaded = CharTokenizer.load(path)
    assert loaded.chars == tokenizer.chars and loaded.vocab_size == tokenizer.vocab_size
    assert torch.equal(loaded.encode(text), ids)
    assert tokenizer_path_for("ckpt/tiny_gpt.safetensors").name == "tiny_gpt.tokenizer.json"


def test_unknown_characters_map_to_the_unknown_id_with_one_warning_per_set(caplog):
    tokenizer = CharTokenizer.from_text("abc ")
    with caplog.at_level(logging.WARNING, logger="loralab.data.char_tokenizer"):
        ids = tokenizer.encode("a€b€")
        tokenizer.encode("€€ a")  # the same unknown set: no second warning
        tokenizer.encode("ä")  # a new set: warned
    assert ids.tolist()[1] == UNK_ID == ids.tolist()[3]
    assert tokenizer.decode(ids) == f"a{UNK_TEXT}b{UNK_TEXT}"
    warnings = [r for r in caplog.records if "not in the tokenizer" in r.getMessage()]
    assert len(warnings) == 2 and "€" in warnings[0].getMessage()


def test_a_file_that_is_not_a_tokenizer_is_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"vocab": [1, 2]}')
    with pytest.raises(ConfigError, match="data.tokenizer"):
        CharTokenizer.load(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="a pretraining run wrote") as info:
        CharTokenizer.load(tmp_path / "missing.json")  # the user's own file: no make advice
    assert "make" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="make pretrain-charlm"):
        CharTokenizer.load(tmp_path / "checkpoints" / "tiny_gpt.tokenizer.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a loralab character tokenizer file"):
        CharTokenizer.load(tmp_path / "binary.json")


def datamodule(**overrides) -> CharTextDataModule:
    settings = dict(corpus="b", seq_len=32, n_train=64, n_val=16, n_test=16, batch_size=8)
    dm = CharTextDataModule(**{**settings, **overrides})
    dm.setup("fit")
    return dm


def test_windows_are_next_character_pairs_from_disjoint_regions():
    dm = datamodule()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (8, 32)
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    text = dm.text
    (t0, t1), (v0, v1), (s0, s1) = dm.bounds["train"], dm.bounds["val"], dm.bounds["test"]
    assert t0 == 0 and t1 == v0 and v1 == s0 and s1 == len(text)
    # every val window is a substring of the val region
    val_region = text[v0:v1]
    for row in dm.splits["val"].tensors["input_ids"][:4]:
        assert dm.tokenizer.decode(row) in val_region
    # n_val=None takes the region once, in non-overlapping windows
    whole = datamodule(n_val=None)
    assert len(whole.splits["val"]) == (v1 - v0) // 33


def test_a_users_text_file_and_the_pretrained_vocabulary(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("to be or not to be, that is the question. " * 40 + "zebra ∑")
    pretrained = CharTokenizer.from_text(corpus_text("a")).save(tmp_path / "a.tokenizer.json")
    dm = datamodule(path=str(own), tokenizer=str(pretrained))
    assert dm.tokenizer.vocab_size == vocab_size_of(str(pretrained), "b", str(own))
    assert dm.text.startswith("to be or not")
    assert UNK_ID in dm.splits["test"].tensors["labels"]  # ∑ was never seen in pretraining
    # without a tokenizer the vocabulary is the file's own: no unknowns
    assert vocab_size_of(None, "b", str(own)) == len(set(own.read_text())) + 1
    assert vocab_size_of(str(tmp_path / "missing.json"), "b", None) is None


def test_bad_settings_fail_with_one_sentence_naming_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.path"):
        CharTextDataModule(path=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="data.seq_len"):
        CharTextDataModule(corpus="b", seq_len=20_000)
    with pytest.raises(ConfigError, match="data.vocab_size=7"):
        CharTextDataModule(corpus="b", vocab_size=7)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"fine text\nthen \xff\xfe garbage",
            r"is not UTF-8 text \(byte b'\\xff' at offset 15, line 2\); pass a UTF-8 text file",
        ),
        (
            b"\x7fELF\x02\x01\x01\x00\x00\x00 a binary",
            r"holds a NUL byte at offset 7 \(line 1\), so it is binary data, not text",
        ),
    ],
    ids=["not-utf8", "binary"],
)
def test_a_file_that_is_not_utf8_text_is_refused_not_replaced(tmp_path, content, message):
    path = tmp_path / "mine.txt"
    path.write_bytes(content * 200)
    with pytest.raises(ConfigError, match=rf"data\.path: .*{message}"):
        CharTextDataModule(path=str(path), seq_len=8)
    assert vocab_size_of(None, "a", str(path)) is None  # the config still composes

"""Language-modelling text with the model's tokenizer: documents joined with EOS, packed into
blocks whose labels are the next ids, split into train/val/test from any source."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from tests.tiny_llm import write_jsonl, write_tokenizer  # noqa: E402

from loralab.data import LMTextDataModule  # noqa: E402
from loralab.data.corpora import corpus_text  # noqa: E402
from loralab.data.lm_text import blocks, pack  # noqa: E402
from loralab.errors import ConfigError, MissingFileError  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(folder)
    return folder


def test_documents_are_joined_with_eos_and_packed_into_next_id_blocks():
    stream = pack([[5, 6, 7], [8, 9]], eos_id=2)
    assert stream.tolist() == [5, 6, 7, 2, 8, 9, 2]
    inputs, labels = blocks(stream, block_size=3)
    assert inputs.tolist() == [[5, 6, 7], [2, 8, 9]]
    assert labels.tolist() == [[6, 7, 2], [8, 9, 2]]  # every id after the first is a target once


def test_a_tokenizer_that_starts_texts_with_bos_starts_every_block_with_it(tmp_path):
    from tokenizers import processors

    stream = pack([[5, 6, 7], [8, 9]], eos_id=2)
    inputs, labels = blocks(stream, block_size=3, bos_id=1)
    assert inputs.tolist() == [[1, 5, 6], [1, 2, 8]]
    assert labels.tolist() == [[5, 6, 7], [2, 8, 9]]  # each stream id a target once

    tokenizer = write_tokenizer(tmp_path / "tok")  # made to add BOS, as Gemma-3's does
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    tokenizer.save_pretrained(tmp_path / "tok")
    dm = LMTextDataModule(tokenizer=str(tmp_path / "tok"), corpus="b", block_size=32)
    dm.setup()
    for split in dm.splits.values():
        assert (split[:]["input_ids"][:, 0] == bos).all()
        assert (split[:]["labels"] != bos).all()


def test_a_bundled_corpus_is_carved_into_train_val_test_in_order(tokenizer_dir):
    dm = LMTextDataModule(tokenizer=str(tokenizer_dir), corpus="b", block_size=64)
    dm.setup()
    ids = dm.tokenizer(corpus_text("b"), add_special_tokens=False, verbose=False)["input_ids"]
    total = len(ids) + 1  # the EOS after the one document
    sizes = {name: len(ds) for name, ds in dm.splits.items()}
    assert sizes["val"] == sizes["test"] == round(total * 0.05) // 64
    assert sizes["train"] == (total - 2 * round(total * 0.05) - 1) // 64
    first_val = dm.splits["val"][0]["input_ids"]
    start = total - 2 * round(total * 0.05)  # val follows train, test follows val
    assert first_val.tolist() == ids[start : start + 64]
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (8, 64)
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    assert dm.vocab_size == len(dm.tokenizer) and dm.state_dict()["tokenizer_size"] == 400


def test_table_and_text_files_and_their_own_splits(tokenizer_dir, tmp_path):
    rows = [{"text": f"Document number {i} about the harbour."} for i in range(40)]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    val = tmp_path / "val.txt"
    val.write_text("The harbour at dawn: ships, gulls and the old lighthouse keeper. " * 8)
    dm = LMTextDataModule(
        tokenizer=str(tokenizer_dir),
        train_file=str(train),
        val_file=str(val),
        block_size=16,
        test_fraction=0.1,
        n_train=5,
    )
    dm.setup()
    eos = dm.tokenizer.eos_token_id
    assert len(dm.splits["train"]) == 5  # capped at n_train blocks
    train_ids = torch.cat([dm.splits["train"][i]["input_ids"] for i in range(5)])
    assert (train_ids == eos).sum() >= 1  # documents are separated by EOS
    val_text = dm.tokenizer.decode(dm.splits["val"][0]["input_ids"])
    assert val_text.startswith("The harbour at dawn")
    assert len(dm.splits["test"]) >= 1  # carved off the end of train


def test_bad_sources_fail_naming_the_key(tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="exactly one text source"):
        LMTextDataModule(tokenizer=str(tokenizer_dir), corpus="b", train_file="x.txt")
    with pytest.raises(MissingFileError, match="data.train_file: no file at"):
        LMTextDataModule(tokenizer=str(tokenizer_dir), train_file=str(tmp_path / "no.txt")).setup()
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(ConfigError, match="data.block_size"):
        LMTextDataModule(tokenizer=str(tokenizer_dir), train_file=str(short), block_size=64).setup()
    table = write_jsonl(tmp_path / "t.jsonl", [{"body": "x"}] * 4)
    with pytest.raises(ConfigError, match="data.text_field='text'"):
        LMTextDataModule(tokenizer=str(tokenizer_dir), train_file=str(table)).setup()
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        LMTextDataModule(tokenizer=str(tokenizer_dir), train_file=str(bad)).setup()
    with pytest.raises(MissingFileError, match="data.tokenizer"):
        LMTextDataModule(tokenizer=str(tmp_path / "nothing"), corpus="b").setup()


def test_a_checkpoint_of_another_vocabulary_is_refused(tokenizer_dir):
    dm = LMTextDataModule(tokenizer=str(tokenizer_dir), corpus="a")
    with pytest.raises(ConfigError, match="set data.tokenizer=elsewhere"):
        dm.load_state_dict({"tokenizer": "elsewhere", "tokenizer_size": 999})
    dm.load_state_dict(dm.state_dict())


def test_an_lm_text_run_fine_tunes_a_tiny_llama(tmp_path, train_cfg):
    from tests.tiny_llm import write_tiny_llama

    from loralab.train import train

    model = write_tiny_llama(tmp_path / "llama")
    cfg = train_cfg(
        "data=lm_text",
        "model=smollm2",
        "task=language_modeling",
        f"model.pretrained_model_name_or_path={model}",
        f"data.tokenizer={model}",
        "data.block_size=32",
        "data.n_train=64",
        "data.n_val=8",
        "data.n_test=8",
        "adapter.targets=all-linear",
        "adapter.trainable=[]",
        "adapter.lr=1e-2",
        "monitor.metric=val/loss",
        "monitor.mode=min",
        "optimized_metric=val/loss",
        "logger=[]",
    )
    metrics = train(cfg)
    assert metrics["val/loss"] < metrics["val/loss_start"]
    assert not any("exact_match" in key for key in metrics)  # plain text has no answers

"""Every data module hands Lightning resumable loaders: the training order is a function of
(seed, epoch), and a loader restored from `state_dict()` yields exactly the batches the
interrupted one had left. Checked for the synthetic, character, text classification, LM text
and instruction data alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from loralab.data import CharTextDataModule, SyntheticDataModule
from loralab.data.loaders import EpochShuffleSampler, LengthGroupedSampler, ResumableDataLoader


def synthetic(tmp_path: Path) -> SyntheticDataModule:
    return SyntheticDataModule(vocab_size=64, seq_len=16, n_train=96, batch_size=8, seed=7)


def char_text(tmp_path: Path) -> CharTextDataModule:
    return CharTextDataModule(corpus="b", seq_len=16, n_train=96, n_val=8, n_test=8, batch_size=8)


def text(tmp_path: Path):
    pytest.importorskip("datasets")
    pytest.importorskip("transformers")
    from loralab.data import TextClassificationDataModule
    from loralab.data.bundled.reviews import ensure_text_dataset
    from loralab.models.hf import minilm_path

    files = ensure_text_dataset(tmp_path / "reviews", n_train=96, n_val=8, n_test=8)
    return TextClassificationDataModule(
        tokenizer=minilm_path(),
        num_classes=2,
        train_file=str(files["train"]),
        val_file=str(files["validation"]),
        test_file=str(files["test"]),
        batch_size=8,
        cache_dir=str(tmp_path / "cache"),
    )


def lm_text(tmp_path: Path):
    pytest.importorskip("transformers")
    from tests.tiny_llm import write_tokenizer

    from loralab.data import LMTextDataModule

    write_tokenizer(tmp_path / "tokenizer")
    return LMTextDataModule(
        tokenizer=str(tmp_path / "tokenizer"), corpus="b", block_size=16, n_train=96, batch_size=8
    )


def instruct(tmp_path: Path):
    pytest.importorskip("transformers")
    from tests.tiny_llm import write_tokenizer

    from loralab.data import InstructDataModule
    from loralab.data.bundled.instructions import ensure_instruction_dataset

    write_tokenizer(tmp_path / "tokenizer")
    files = ensure_instruction_dataset(tmp_path / "instruct", n_train=96, n_val=8, n_test=8)
    return InstructDataModule(
        tokenizer=str(tmp_path / "tokenizer"),
        train_file=str(files["train"]),
        val_file=str(files["validation"]),
        test_file=str(files["test"]),
        batch_size=8,
    )


MODULES = {
    "synthetic": synthetic,
    "char_text": char_text,
    "text": text,
    "lm_text": lm_text,
    "instruct": instruct,
}


def train_loader(make: Callable, tmp_path: Path, epoch: int = 0) -> ResumableDataLoader:
    dm = make(tmp_path)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader)
    loader.sampler.set_epoch(epoch)
    return loader


@pytest.mark.parametrize("name", MODULES)
def test_a_restored_train_loader_continues_mid_epoch(name, tmp_path):
    make = MODULES[name]
    whole = [b["input_ids"] for b in train_loader(make, tmp_path, epoch=1)]
    assert len(whole) == 12

    interrupted = train_loader(make, tmp_path, epoch=1)
    batches = iter(interrupted)
    seen = [next(batches)["input_ids"] for _ in range(5)]
    state = interrupted.state_dict()
    assert state == {"epoch": 1, "batches": 5}

    resumed = train_loader(make, tmp_path)  # a fresh process: epoch 0 until the state says 1
    resumed.load_state_dict(state)
    rest = [b["input_ids"] for b in resumed]
    assert len(seen) + len(rest) == len(whole)
    for got, want in zip(seen + rest, whole, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", MODULES)
def test_the_shuffle_order_is_a_function_of_seed_and_epoch(name, tmp_path):
    make = MODULES[name]
    first = [next(iter(train_loader(make, tmp_path, epoch=e)))["input_ids"] for e in (0, 1, 0)]
    assert torch.equal(first[0], first[2])
    assert not torch.equal(first[0], first[1])
    val = make(tmp_path)
    val.setup("fit")
    a, b = (next(iter(val.val_dataloader()))["input_ids"] for _ in range(2))
    assert torch.equal(a, b)


def test_length_grouped_batches_are_alike_in_length_and_a_function_of_seed_and_epoch():
    lengths = torch.randint(5, 80, (203,), generator=torch.Generator().manual_seed(0)).tolist()
    data = list(range(len(lengths)))

    def order(seed: int, epoch: int, grouped: bool = True) -> list[int]:
        sampler = (
            LengthGroupedSampler(data, seed, lengths, batch_size=8)
            if grouped
            else EpochShuffleSampler(data, seed)
        )
        sampler.set_epoch(epoch)
        return list(sampler)

    def padded(indices: list[int]) -> int:
        batches = [indices[i : i + 8] for i in range(0, len(indices), 8)]
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    grouped = order(3, 0)
    assert sorted(grouped) == data  # every example once
    assert grouped == order(3, 0) and grouped != order(3, 1) and grouped != order(4, 0)
    # in each group of 8 batches, the same examples as the plain shuffle's, batched by length
    plain = order(3, 0, grouped=False)
    for start in range(0, len(data), 64):
        assert sorted(grouped[start : start + 64]) == sorted(plain[start : start + 64])
    assert padded(grouped) < 0.8 * padded(plain)
    # the short last batch (203 = 25 x 8 + 3) stays last
    assert len(set(grouped[-3:]) & set(plain[192:])) == 3

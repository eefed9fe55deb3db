"""Synthetic data: deterministic, exactly labelled, well shaped, and served as batch dicts."""

from __future__ import annotations

import pytest
import torch

from loralab.data import SyntheticDataModule, make_token_dataset
from loralab.data.synthetic import group_bounds

VOCAB, SEQ, N_GROUPS = 512, 32, 8
RULES = ["low_high", "majority_group"]


def dataset(rule: str, seed: int = 0, n: int = 2000, **kwargs):
    return make_token_dataset(rule, n, VOCAB, SEQ, seed, min_len=8, **kwargs)


def counts_per_group(ids: torch.Tensor) -> torch.Tensor:
    """Group counts computed independently of the generator: id -> group by its range."""
    bounds = group_bounds(VOCAB, N_GROUPS).tolist()
    counts = torch.zeros(len(ids), N_GROUPS, dtype=torch.long)
    for g in range(N_GROUPS):
        counts[:, g] = ((ids >= bounds[g]) & (ids < bounds[g + 1])).sum(dim=1)
    return counts


def test_groups_are_contiguous_ranges_covering_all_real_ids():
    bounds = group_bounds(VOCAB, N_GROUPS)
    assert bounds[0] == 1 and bounds[-1] == VOCAB
    assert torch.all(bounds.diff() >= (VOCAB - 1) // N_GROUPS)


@pytest.mark.parametrize("rule", RULES)
def test_same_seed_same_data_other_seed_other_data(rule):
    a, b, c = dataset(rule, seed=3), dataset(rule, seed=3), dataset(rule, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_data_does_not_touch_the_global_rng():
    state = torch.get_rng_state()
    dataset("low_high")
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("rule", RULES)
def test_shapes_padding_and_mask_agree(rule):
    ids, mask, labels = dataset(rule)
    assert ids.shape == mask.shape == (2000, SEQ) and labels.shape == (2000,)
    assert ids.dtype == labels.dtype == torch.long and mask.dtype == torch.bool
    assert torch.equal(mask, ids != 0)
    assert ids.max() < VOCAB and ids[mask].min() >= 1
    lengths = mask.sum(dim=1)
    assert lengths.min() >= 8 and lengths.max() == SEQ
    assert torch.equal(mask, torch.arange(SEQ) < lengths[:, None])  # right-padded


def test_full_length_when_min_len_is_none():
    _, mask, _ = make_token_dataset("low_high", 50, VOCAB, SEQ, 0)
    assert mask.all()


def test_low_high_label_is_the_half_with_more_tokens():
    ids, _, labels = dataset("low_high")
    counts = counts_per_group(ids)
    low, high = counts[:, : N_GROUPS // 2].sum(dim=1), counts[:, N_GROUPS // 2 :].sum(dim=1)
    assert torch.all(low != high)  # ties were resampled: every label is exact
    assert torch.equal(labels, (high > low).long())
    assert abs(labels.float().mean().item() - 0.5) < 0.10


def test_majority_group_label_is_the_most_frequent_group():
    ids, _, labels = dataset("majority_group")
    counts = counts_per_group(ids)
    top2 = counts.topk(2, dim=1).values
    assert torch.all(top2[:, 0] > top2[:, 1])
    assert torch.equal(labels, counts.argmax(dim=1))
    share = labels.bincount(minlength=N_GROUPS).float() / len(labels)
    assert share.min() > 0.5 / N_GROUPS


def test_p_range_controls_how_clear_the_majority_is():
    ids_easy, _, _ = dataset("low_high", p_min=0.9, p_max=0.95)
    ids_hard, _, _ = dataset("low_high", p_min=0.55, p_max=0.6)

    def margin(ids):
        counts = counts_per_group(ids)
        return (counts[:, :4].sum(1) - counts[:, 4:].sum(1)).abs().float().mean()

    assert margin(ids_easy) > 2 * margin(ids_hard)


def test_bad_settings_name_their_keys():
    with pytest.raises(ValueError, match=r"data\.rule.*low_high.*majority_group"):
        dataset("parity")
    with pytest.raises(ValueError, match=r"data\.vocab_size"):
        make_token_dataset("low_high", 10, 5, SEQ, 0, n_groups=8)
    with pytest.raises(ValueError, match=r"data\.min_len"):
        make_token_dataset("low_high", 10, VOCAB, SEQ, 0, min_len=SEQ + 1)
    with pytest.raises(ValueError, match=r"data\.p_max"):
        dataset("low_high", p_min=0.9, p_max=0.6)
    with pytest.raises(ValueError, match=r"data\.temperature"):
        dataset("low_high", temperature=2.0)
    with pytest.raises(ValueError, match=r"data\.rule"):
        SyntheticDataModule(rule="parity")
    with pytest.raises(ValueError, match=r"data\.vocab_size"):
        SyntheticDataModule(vocab_size=4)
    with pytest.raises(ValueError, match=r"data\.num_classes=8"):
        SyntheticDataModule(rule="majority_group", num_classes=2)


def small_datamodule(**overrides) -> SyntheticDataModule:
    settings = dict(n_train=256, n_val=64, n_test=64, batch_size=32, min_len=16, seed=7)
    return SyntheticDataModule(**{**settings, **overrides})


def test_num_classes_follows_the_rule():
    assert small_datamodule().num_classes == 2
    assert small_datamodule(rule="majority_group", n_groups=6).num_classes == 6
    assert small_datamodule(num_classes=2).hparams.num_classes == 2


def test_splits_differ_and_loaders_yield_batch_dicts():
    dm = small_datamodule(rule="majority_group", p_min=0.4)
    dm.setup("fit")
    ids = {split: dm.splits[split].tensors["input_ids"] for split in ("train", "val", "test")}
    assert not torch.equal(ids["val"], ids["test"])
    assert not torch.equal(ids["train"][:64], ids["val"])
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (32, 32)
    assert batch["input_ids"].dtype == torch.long and batch["labels"].dtype == torch.long
    assert batch["attention_mask"].dtype == torch.bool
    assert int(batch["labels"].max()) < dm.num_classes
    assert dm.hparams.p_min == 0.4


def test_loaders_are_reproducible_and_only_train_shuffles():
    def first_batches(dm):
        dm.setup("fit")
        return [
            next(iter(loader()))["input_ids"] for loader in (dm.train_dataloader, dm.val_dataloader)
        ]

    (train_a, val_a), (train_b, val_b) = (
        first_batches(small_datamodule()),
        first_batches(small_datamodule()),
    )
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    dm = small_datamodule()
    dm.setup("test")
    assert torch.equal(val_a, dm.splits["val"].tensors["input_ids"][:32])  # val in order
    assert not torch.equal(train_a, dm.splits["train"].tensors["input_ids"][:32])  # train shuffled
    assert torch.equal(
        next(iter(dm.test_dataloader()))["input_ids"], dm.splits["test"].tensors["input_ids"][:32]
    )

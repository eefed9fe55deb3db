"""The rank analysis on updates whose rank and directions are known by construction."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from tests.adapter_models import VARIANTS, adapter_cfg, pretend_trained, tiny_backbone
from torch import nn

from loralab.analysis import (
    analyse_update,
    energy_rank,
    full_finetuning_updates,
    linear_weights,
    lora_updates,
    projection_of,
    similarity_grid,
    singular_values,
    subspace_similarity,
    top_input_directions,
)
from loralab.analysis.spectrum import low_rank_singular_values
from loralab.lora import LoRALayer, apply_adapter, lora_layers, merge_lora, save_adapter
from loralab.models import save_backbone
from loralab.run.builder import read_checkpoint


def update_with_spectrum(values: list[float], out: int = 48, d_in: int = 40) -> torch.Tensor:
    """U diag(values) V^T with random orthonormal U, V: singular values exactly `values`."""
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(out, len(values), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(d_in, len(values), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T


def test_energy_ranks_of_a_known_spectrum():
    # energies 16, 9, 4, 2.25, 1 of 32.25: the top 3 hold 89.9%, the top 4 96.9%, all 5 100%
    profile = analyse_update(update_with_spectrum([4, 3, 2, 1.5, 1]))
    assert (profile.rank90, profile.rank99) == (4, 5)
    assert profile.shape == (48, 40) and profile.full_rank == 40
    assert profile.singular_values[:5].tolist() == pytest.approx([4, 3, 2, 1.5, 1])
    assert float(profile.singular_values[5:].abs().max()) < 1e-10


@pytest.mark.parametrize("rank", [1, 16, 63])
def test_a_low_rank_updates_spectrum_is_read_off_its_range_exactly(rank):
    values = torch.linspace(5.0, 0.5, rank, dtype=torch.float64)
    delta = update_with_spectrum(values.tolist(), out=300, d_in=200)  # LoRA's shape: B @ A
    sketched = low_rank_singular_values(delta)
    assert sketched is not None and sketched.shape == (200,)
    torch.testing.assert_close(sketched, torch.linalg.svdvals(delta), rtol=0, atol=1e-12)
    torch.testing.assert_close(singular_values(delta)[:rank], values, rtol=0, atol=1e-12)


def test_an_update_of_higher_rank_than_the_sketch_gets_the_full_decomposition():
    g = torch.Generator().manual_seed(1)
    full = torch.randn(300, 200, generator=g, dtype=torch.float64)  # full fine-tuning's kind
    rank_65 = update_with_spectrum([1.0] * 65, out=300, d_in=200)
    assert low_rank_singular_values(full) is None and low_rank_singular_values(rank_65) is None
    assert torch.equal(singular_values(full), torch.linalg.svdvals(full))
    small = update_with_spectrum([2.0, 1.0], out=100, d_in=120)  # too small to gain anything
    assert low_rank_singular_values(small) is None


def test_a_zero_update_has_rank_zero_and_bad_fractions_fail():
    assert energy_rank(torch.zeros(5), 0.99) == 0
    with pytest.raises(ValueError, match="fraction"):
        energy_rank(torch.ones(3), 0.0)


def test_full_finetuning_update_of_known_rank_read_from_files(tmp_path):
    """best.ckpt (keys prefixed `model.`) minus the base file: a rank-3 change is rank 3."""
    base = {
        "layers.0.attn.q_proj.weight": torch.randn(40, 40),
        "layers.0.attn.v_proj.weight": torch.randn(40, 40),
        "layers.0.ffn.fc1.weight": torch.randn(80, 40),
    }
    save_file(base, tmp_path / "base.safetensors")
    change = update_with_spectrum([1.0, 1.0, 1.0], 40, 40).float()
    tuned = {f"model.{k}": v.clone() for k, v in base.items()}
    tuned["model.layers.0.attn.q_proj.weight"] += change
    torch.save({"state_dict": tuned}, tmp_path / "best.ckpt")

    checkpoint = read_checkpoint(tmp_path / "best.ckpt")
    updates = full_finetuning_updates(checkpoint["state_dict"], tmp_path / "base.safetensors")
    assert set(updates) == {"layers.0.attn.q_proj", "layers.0.attn.v_proj"}  # no FFN
    assert analyse_update(updates["layers.0.attn.q_proj"]).rank99 == 3
    assert analyse_update(updates["layers.0.attn.v_proj"]).rank99 == 0


@pytest.mark.parametrize(("rule", "scaling"), [("standard", 12 / 4), ("rs", 12 / 2)])
def test_lora_update_read_from_an_adapter_file_is_the_layers_delta(tmp_path, rule, scaling):
    model = nn.Sequential()
    model.add_module("q_proj", LoRALayer(nn.Linear(24, 16), rank=4, alpha=12, scaling_rule=rule))
    layer = model.q_proj
    with torch.no_grad():
        layer.lora_B.normal_()
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, {"adapter": {"rank": 4, "alpha": 12, "scaling": rule}})

    updates = lora_updates(path)
    assert layer.scaling == pytest.approx(scaling)
    torch.testing.assert_close(updates["q_proj"].float(), layer.delta_weight().detach())
    assert analyse_update(updates["q_proj"]).rank99 <= 4


def test_subspace_similarity_is_one_for_the_same_subspace_and_zero_for_orthogonal_ones():
    basis = torch.eye(10, dtype=torch.float64)
    assert subspace_similarity(basis[:, :3], basis[:, :3], 3, 3) == pytest.approx(1.0)
    assert subspace_similarity(basis[:, :3], basis[:, 3:6], 3, 3) == pytest.approx(0.0)
    # a 2-dim subspace inside a 4-dim one: phi(2, 4) = 1, phi(2, 2) = 1/2 (one shared axis)
    assert subspace_similarity(basis[:, [0, 1]], basis[:, [0, 2, 1, 3]], 2, 4) == pytest.approx(1)
    assert subspace_similarity(basis[:, [0, 1]], basis[:, [0, 2, 1, 3]], 2, 2) == pytest.approx(0.5)


def test_similarity_grid_of_an_update_with_itself_is_one_on_the_diagonal():
    delta = update_with_spectrum([5, 4, 3, 2])
    grid = similarity_grid(delta, delta, 4, 4)
    assert grid.shape == (4, 4)
    torch.testing.assert_close(torch.diagonal(grid), torch.ones(4, dtype=torch.float64))
    directions = top_input_directions(delta, 4)
    torch.testing.assert_close(directions.T @ directions, torch.eye(4, dtype=torch.float64))


def test_attention_projections_are_recognised_by_name():
    assert projection_of("layers.0.attn.q_proj") == "q"
    assert projection_of("encoder.layer.1.attention.self.value") == "v"
    assert projection_of("encoder.layer.1.attention.output.dense") == "o"
    assert projection_of("layers.0.ffn.fc1") is None


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_an_adapter_files_update_is_the_merged_weight_minus_the_pretrained_one(tmp_path, variant):
    """For every variant, what the rank analysis reads from the files is the change merging
    makes: PiSSA's B @ A starts at W's top singular part and DoRA rescales rows, so for them
    scaling * B @ A alone is not the change."""
    base = tiny_backbone()
    base_path = tmp_path / "base.safetensors"
    save_backbone(base, base_path)  # as `make pretrain` writes it
    pretrained = linear_weights(base.state_dict())
    cfg = adapter_cfg(**VARIANTS[variant])
    model = copy.deepcopy(base)
    apply_adapter(model, cfg)
    pretend_trained(model)
    adapter_path = tmp_path / "adapter.safetensors"
    save_adapter(adapter_path, model, {"adapter": cfg})

    updates = lora_updates(adapter_path, base_path)
    merge_lora(model)
    for name, layer in lora_layers(model):
        merged = layer.base.weight.double()
        torch.testing.assert_close(
            updates[name], merged - pretrained[name].double(), atol=1e-5, rtol=0
        )
    if variant in ("dora", "pissa"):
        with pytest.raises(ValueError, match="needs its pretrained weight"):
            lora_updates(adapter_path)

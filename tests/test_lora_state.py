"""Adapter files: only the trained tensors, loadable onto a fresh copy of the same base."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tests.adapter_models import ToyTransformer
from torch import nn

from loralab.lora import (
    AdapterConfigError,
    adapter_state_dict,
    apply_adapter,
    load_adapter,
    lora_layers,
    merge_lora,
    read_adapter_metadata,
    save_adapter,
)

CFG = {
    "name": "lora",
    "rank": 2,
    "alpha": 4,
    "targets": ["q_proj", "v_proj"],
    "trainable": ["classifier"],
}
ADAPTER_KEYS = sorted(
    [f"layers.{i}.attn.{p}.lora_{ab}" for i in (0, 1) for p in ("q_proj", "v_proj") for ab in "AB"]
    + ["classifier.weight", "classifier.bias"]
)


def make_base(d: int = 32, seed: int = 0) -> ToyTransformer:
    torch.manual_seed(seed)
    return ToyTransformer(d, hidden=2 * d)


def adapted(base: nn.Module, seed: int, cfg: dict = CFG) -> nn.Module:
    """A copy of `base` with LoRA applied; `seed` picks the random A init."""
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    apply_adapter(model, cfg)
    return model


def pretend_trained(model: nn.Module) -> None:
    """Move every trainable tensor, as training would."""
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)


def inputs(d: int = 32) -> torch.Tensor:
    return torch.randn(2, 4, d, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def trained() -> tuple[nn.Module, nn.Module]:
    base = make_base()
    model = adapted(base, seed=1)
    pretend_trained(model)
    return base, model


def test_state_dict_holds_only_trained_tensors_as_cpu_copies(trained) -> None:
    _, model = trained
    state = adapter_state_dict(model)
    assert sorted(state) == ADAPTER_KEYS
    assert all(
        t.device.type == "cpu" and t.is_contiguous() and not t.requires_grad for t in state.values()
    )
    before = state["classifier.bias"].clone()
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    assert torch.equal(state["classifier.bias"], before)  # a snapshot, not a view


def test_full_fine_tuning_state_is_the_whole_model() -> None:
    model = make_base()
    apply_adapter(model, {"name": "full"})
    assert sorted(adapter_state_dict(model)) == sorted(model.state_dict())


def test_save_load_onto_a_fresh_base_reproduces_outputs(trained, tmp_path: Path) -> None:
    base, model = trained
    path = tmp_path / "adapter.safetensors"
    size = save_adapter(path, model)
    assert size == path.stat().st_size > 0

    fresh = adapted(base, seed=2)  # same base weights, different random A
    x = inputs()
    assert not torch.equal(fresh(x), model(x))
    load_adapter(path, fresh)
    assert torch.equal(fresh(x), model(x))


def test_file_holds_only_adapter_tensors_and_is_small(trained, tmp_path: Path) -> None:
    _, model = trained
    size = save_adapter(tmp_path / "adapter.safetensors", model)
    with safe_open(tmp_path / "adapter.safetensors", framework="pt") as f:
        assert sorted(f.keys()) == ADAPTER_KEYS
    full = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(full, tmp_path / "full.safetensors")
    assert size < 0.1 * (tmp_path / "full.safetensors").stat().st_size


def test_metadata_round_trip(trained, tmp_path: Path) -> None:
    _, model = trained
    metadata = {"adapter": dict(CFG), "base_checkpoint": None, "step": 7, "path": tmp_path}
    path = tmp_path / "a.safetensors"
    save_adapter(path, model, metadata)
    expected = {**metadata, "path": str(tmp_path)}  # non-JSON values are stored as text
    assert read_adapter_metadata(path) == expected
    assert load_adapter(path, adapted(make_base(), seed=3)) == expected
    save_adapter(path, model)
    assert read_adapter_metadata(path) == {}


def test_write_is_atomic_and_creates_folders(trained, tmp_path: Path) -> None:
    _, model = trained
    path = tmp_path / "run" / "nested" / "adapter.safetensors"
    save_adapter(path, model)
    save_adapter(path, model)  # overwriting is fine too
    assert [p.name for p in path.parent.iterdir()] == ["adapter.safetensors"]


def test_a_failed_write_keeps_the_old_file(trained, tmp_path: Path, monkeypatch) -> None:
    _, model = trained
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model, {"version": 1})

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_adapter(path, model, {"version": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.safetensors"]
    assert read_adapter_metadata(path) == {"version": 1}


def test_loading_onto_a_base_of_another_shape_names_the_key(trained, tmp_path: Path) -> None:
    _, model = trained
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model)
    other = adapted(make_base(d=16), seed=1)
    before = {k: v.clone() for k, v in adapter_state_dict(other).items()}
    with pytest.raises(AdapterConfigError) as info:
        load_adapter(path, other)
    message = str(info.value)
    assert "classifier.bias" not in message  # bias (3,) fits; the first misfit is named
    assert "'classifier.weight'" in message and "(3, 32)" in message and "(3, 16)" in message
    assert "model.*" in message
    # nothing was copied before the mismatch was found
    assert all(torch.equal(before[k], v) for k, v in adapter_state_dict(other).items())


def test_a_key_the_model_lacks_is_an_error(trained, tmp_path: Path) -> None:
    _, model = trained
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model)
    other = adapted(make_base(), seed=1, cfg={**CFG, "targets": ["q_proj"]})
    with pytest.raises(AdapterConfigError, match="v_proj.lora_A' .*which the model lacks"):
        load_adapter(path, other, strict=False)


def test_strict_requires_every_trainable_tensor(trained, tmp_path: Path) -> None:
    base, model = trained
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model)
    wider = adapted(base, seed=1, cfg={**CFG, "targets": ["q_proj", "v_proj", "k_proj"]})
    with pytest.raises(AdapterConfigError, match="k_proj.lora_A' \\(4 in all\\) is not in"):
        load_adapter(path, wider)
    load_adapter(path, wider, strict=False)
    assert torch.equal(wider.layers[0].attn.q_proj.lora_B, model.layers[0].attn.q_proj.lora_B)


def test_loading_into_a_merged_model_merges_the_new_adapter(trained, tmp_path: Path) -> None:
    base, model = trained
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, model)
    fresh = adapted(base, seed=2)
    merge_lora(fresh)
    load_adapter(path, fresh)
    assert all(layer.merged for _, layer in lora_layers(fresh))
    assert (fresh(inputs()) - model(inputs())).abs().max() < 1e-5


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors does not exist"):
        load_adapter(path, make_base())
    with pytest.raises(FileNotFoundError):
        read_adapter_metadata(path)


def test_a_corrupt_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "adapter.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(AdapterConfigError, match="not a readable safetensors file"):
        load_adapter(path, make_base())

"""The base an adapter was trained on is recorded (content hash + shapes) and checked on load."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from tests.adapter_models import adapter_cfg, tiny_backbone

from loralab.lora import AdapterConfigError, MultiAdapterModel, apply_adapter, save_adapter
from loralab.lora.identity import BaseIdentity, base_difference, base_identity, check_same_base
from loralab.lora.state import BASE_IDENTITY_KEY, load_adapter, read_adapter_metadata


def test_equal_weights_give_equal_identities_and_any_change_shows():
    base = base_identity(tiny_backbone(seed=0))
    assert base == base_identity(tiny_backbone(seed=0))
    assert base_difference(base, base_identity(tiny_backbone(seed=0))) is None

    nudged = tiny_backbone(seed=0)
    with torch.no_grad():
        nudged.layers[1].attn.v_proj.weight[3, 5] += 1e-6  # one number, the smallest nudge
    difference = base_difference(base, base_identity(nudged))
    assert difference == (
        "tensor 'layers.1.attn.v_proj.weight' has other values (same shape [32, 32]); "
        f"1 of {len(base.tensors)} tensors differ"
    )
    assert base.digest != base_identity(nudged).digest


def test_shapes_and_missing_tensors_are_named():
    base = base_identity(tiny_backbone())
    wider = BaseIdentity.from_dict(base.to_dict())
    prints = dict(wider.tensors)
    name = "layers.0.ffn.fc1.weight"
    prints[name] = type(prints[name])((128, 32), prints[name].dtype, "0" * 16)
    assert base_difference(base, BaseIdentity(prints)).startswith(
        f"tensor '{name}' is torch.float32 [128, 32], was torch.float32 [64, 32]"
    )
    fewer = base.without(["layers.1"])
    assert "of the trained-on base is missing" in base_difference(base, fewer)


def test_modules_trained_in_full_are_not_part_of_the_base():
    """The head comes from the adapter, so a re-initialised head is still the same base."""
    one, other = tiny_backbone(seed=0), tiny_backbone(seed=0)
    torch.nn.init.normal_(other.classifier.weight)
    assert base_identity(one) != base_identity(other)
    assert base_identity(one, ["classifier"]) == base_identity(other, ["classifier"])


def test_the_identity_survives_json_and_ties_are_hashed_once():
    model = tiny_backbone()
    identity = base_identity(model)
    assert BaseIdentity.from_dict(identity.to_dict()) == identity
    assert identity.to_dict()["digest"] == identity.digest


def adapter_file(tmp_path: Path, base_seed: int = 0) -> tuple[Path, torch.nn.Module]:
    base = tiny_backbone(seed=base_seed)
    identity = base_identity(base, ["classifier"])
    apply_adapter(base, adapter_cfg())
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, base, {"adapter": adapter_cfg()}, base=identity)
    return path, base


def test_an_adapter_file_refuses_another_base_unless_told(tmp_path):
    path, _ = adapter_file(tmp_path)
    assert read_adapter_metadata(path)[BASE_IDENTITY_KEY]["digest"]

    other = tiny_backbone(seed=1)  # same shapes, other weights: a re-pretrained base
    other_identity = base_identity(other, ["classifier"])
    apply_adapter(other, adapter_cfg())
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(AdapterConfigError, match=r"trained on another base .*allow_other_base"):
        load_adapter(path, other, base=other_identity)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # untouched
    load_adapter(path, other, base=other_identity, allow_other_base=True)

    same = tiny_backbone(seed=0)
    same_identity = base_identity(same, ["classifier"])
    apply_adapter(same, adapter_cfg())
    load_adapter(path, same, base=same_identity)


def test_check_same_base_skips_what_it_cannot_compare():
    identity = base_identity(tiny_backbone())
    check_same_base(None, identity, "a file written before identities")
    check_same_base(identity.to_dict(), None, "a full fine-tuning run")


def test_named_adapters_record_their_base_and_refuse_another(tmp_path):
    adapters = MultiAdapterModel(tiny_backbone(seed=0))
    adapters.add_adapter("solver", adapter_cfg())
    adapters.save_adapter("solver", tmp_path / "solver.safetensors")

    MultiAdapterModel(tiny_backbone(seed=0)).load_adapter("solver", tmp_path / "solver.safetensors")
    other = MultiAdapterModel(tiny_backbone(seed=1))
    with pytest.raises(AdapterConfigError, match="trained on another base"):
        other.load_adapter("solver", tmp_path / "solver.safetensors")
    assert "solver" not in other and not other.trained_in_full  # nothing half-built is left
    other.load_adapter("solver", tmp_path / "solver.safetensors", allow_other_base=True)
    assert list(other) == ["solver"]

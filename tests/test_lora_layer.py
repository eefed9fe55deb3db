"""LoRALayer on its own: the math, the init, merging, and what trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loralab.lora import AdapterConfigError, LoRALayer, build_layer


def make_layer(
    in_features: int = 12, out_features: int = 20, rank: int = 4, alpha: float = 8.0, **kwargs
) -> LoRALayer:
    torch.manual_seed(0)
    return LoRALayer(nn.Linear(in_features, out_features), rank=rank, alpha=alpha, **kwargs)


def randomize_b(layer: LoRALayer) -> None:
    """A trained adapter has B != 0; without this, merge tests would add zero."""
    with torch.no_grad():
        layer.lora_B.normal_(std=0.1)


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_output_equals_base_exactly_at_init(init: str) -> None:
    base = nn.Linear(12, 20)
    layer = LoRALayer(base, rank=4, alpha=8, init=init)
    x = torch.randn(3, 5, 12)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_B) == 0
    assert torch.count_nonzero(layer.lora_A) == layer.lora_A.numel()


def test_shapes_scaling_and_frozen_base() -> None:
    layer = make_layer(rank=4, alpha=8)
    assert layer.lora_A.shape == (4, 12)
    assert layer.lora_B.shape == (20, 4)
    assert layer.scaling == 2.0
    assert (layer.rank, layer.alpha, layer.merged) == (4, 8.0, False)
    assert (layer.in_features, layer.out_features) == (12, 20)
    assert layer.weight is layer.base.weight
    assert not layer.base.weight.requires_grad and not layer.base.bias.requires_grad
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad


def test_adapter_follows_base_dtype() -> None:
    layer = LoRALayer(nn.Linear(6, 5, dtype=torch.float64), rank=2, alpha=2)
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float64
    assert layer(torch.randn(2, 6, dtype=torch.float64)).dtype == torch.float64


def test_inits_have_their_documented_scale() -> None:
    torch.manual_seed(0)
    gaussian = LoRALayer(nn.Linear(400, 8), rank=50, alpha=50, init="gaussian")
    assert gaussian.lora_A.std().item() == pytest.approx(0.01, rel=0.05)
    kaiming = LoRALayer(nn.Linear(400, 8), rank=50, alpha=50, init="kaiming")
    # kaiming_uniform_ with a=sqrt(5) draws from U(-1/sqrt(in), 1/sqrt(in)), like nn.Linear
    assert kaiming.lora_A.abs().max().item() <= 1 / 400**0.5


def test_forward_is_base_plus_scaled_low_rank_update() -> None:
    layer = make_layer()
    randomize_b(layer)
    x = torch.randn(7, 12)
    weight = layer.base.weight + layer.scaling * layer.lora_B @ layer.lora_A
    expected = x @ weight.T + layer.base.bias
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=0)
    assert layer.delta_weight().shape == (20, 12)
    torch.testing.assert_close(layer.delta_weight(), weight - layer.base.weight)


def test_merge_unmerge_round_trip() -> None:
    layer = make_layer()
    randomize_b(layer)
    original = layer.base.weight.detach().clone()
    x = torch.randn(4, 12)
    unmerged_out = layer(x)

    layer.merge()
    assert layer.merged
    assert (layer.base.weight - original).abs().max() > 1e-3  # the update really went in
    assert (layer(x) - unmerged_out).abs().max() < 1e-5

    layer.unmerge()
    assert not layer.merged
    assert (layer.base.weight - original).abs().max() < 1e-6
    assert (layer(x) - unmerged_out).abs().max() < 1e-6


def test_merge_twice_adds_the_update_once() -> None:
    layer = make_layer()
    randomize_b(layer)
    layer.merge()
    once = layer.base.weight.detach().clone()
    layer.merge()
    assert torch.equal(layer.base.weight, once)
    layer.unmerge()
    after_unmerge = layer.base.weight.detach().clone()
    layer.unmerge()
    assert torch.equal(layer.base.weight, after_unmerge)


def test_eval_and_train_never_merge() -> None:
    layer = make_layer()
    randomize_b(layer)
    original = layer.base.weight.detach().clone()
    for _ in range(2):
        layer.eval()
        assert not layer.merged
        layer.train()
        assert not layer.merged
    assert torch.equal(layer.base.weight, original)


def test_gradients_reach_only_the_adapter() -> None:
    layer = make_layer()
    layer(torch.randn(6, 12)).pow(2).sum().backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    # with B = 0, dL/dA = B^T(...) = 0 but dL/dB != 0: B moves first, then A follows
    assert torch.count_nonzero(layer.lora_A.grad) == 0
    assert torch.count_nonzero(layer.lora_B.grad) > 0


def test_trainable_count_is_rank_times_in_plus_out() -> None:
    layer = make_layer(in_features=12, out_features=20, rank=4)
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert trainable == 4 * (12 + 20)


def test_dropout_is_identity_at_zero_and_off_in_eval() -> None:
    assert isinstance(make_layer(dropout=0.0).dropout, nn.Identity)
    layer = make_layer(dropout=0.5)
    assert isinstance(layer.dropout, nn.Dropout) and layer.dropout.p == 0.5
    randomize_b(layer)
    layer.eval()
    x = torch.randn(3, 12)
    assert torch.equal(layer(x), layer(x))


def test_base_without_bias() -> None:
    layer = LoRALayer(nn.Linear(5, 3, bias=False), rank=2, alpha=4)
    assert layer.bias is None
    assert layer(torch.randn(2, 5)).shape == (2, 3)


def test_extra_repr_shows_the_settings() -> None:
    text = repr(make_layer(rank=4, alpha=8))
    for part in (
        "in_features=12",
        "out_features=20",
        "rank=4",
        "alpha=8",
        "scaling=2",
        "merged=False",
    ):
        assert part in text


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"rank": 0}, "adapter.rank"),
        ({"rank": -2}, "adapter.rank"),
        ({"rank": 2.5}, "adapter.rank"),
        ({"rank": True}, "adapter.rank"),
        ({"alpha": 0}, "adapter.alpha"),
        ({"alpha": -1.0}, "adapter.alpha"),
        ({"alpha": "16"}, "adapter.alpha"),
        ({"dropout": 1.0}, "adapter.dropout"),
        ({"dropout": -0.1}, "adapter.dropout"),
        ({"init": "orthogonal"}, "adapter.init"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict, key: str) -> None:
    settings = {"name": "lora", "rank": 4, "alpha": 8.0, **kwargs}
    with pytest.raises(AdapterConfigError, match=key) as info:
        build_layer(nn.Linear(4, 4), settings)
    message = str(info.value)
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert f"set {key}=" in message


def test_bad_init_lists_the_allowed_values() -> None:
    with pytest.raises(AdapterConfigError, match="kaiming, gaussian"):
        build_layer(nn.Linear(4, 4), {"name": "lora", "rank": 2, "alpha": 2, "init": "xavier"})

"""PEFT config fields loralab cannot reproduce are refused naming exactly that field, and the
fields it maps (or that change nothing it computes) are accepted, as real PEFT saves them."""

from __future__ import annotations

import json

import pytest
from tests.adapter_models import tiny_backbone

from loralab.lora import AdapterConfigError, import_peft, lora_layers
from loralab.lora.peft_config import REFUSED, adapter_config_from_peft

peft = pytest.importorskip("peft")

SETTINGS = {
    "alpha_pattern": {"q_proj": 16},
    "rank_pattern": {"q_proj": 8},
    "lora_bias": True,
    "trainable_token_indices": [1, 2],
    "bias": "lora_only",
    "layers_to_transform": [0],
    "target_parameters": ["layers.0.attn.q_proj.weight"],
    "use_qalora": True,  # a PEFT option without a message of its own
    "layer_replication": [[0, 1]],
}


def saved_config(**changes) -> dict:
    """adapter_config.json exactly as PEFT's save_pretrained writes it, with `changes`."""
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    saved = json.loads(json.dumps(config.to_dict(), default=list))
    return {**saved, **changes}


def test_a_default_peft_config_imports():
    cfg = adapter_config_from_peft(saved_config())
    assert (cfg["rank"], cfg["alpha"], cfg["targets"]) == (4, 8, ["q_proj", "v_proj"])


@pytest.mark.parametrize("field", SETTINGS)
def test_each_unsupported_option_is_refused_naming_that_option_only(field, tmp_path):
    (tmp_path / "adapter_config.json").write_text(
        json.dumps(saved_config(**{field: SETTINGS[field]}))
    )
    model = tiny_backbone()
    with pytest.raises(AdapterConfigError) as error:
        import_peft(tmp_path, model)
    message = str(error.value)
    assert message.startswith(f"the PEFT config sets {field}=")
    others = [f for f in SETTINGS if f != field and f not in REFUSED.get(field, "")]
    assert not [f for f in others if f in message], message  # no other option is blamed
    assert not any(True for _ in lora_layers(model))  # refused before any change


def test_fan_in_fan_out_is_accepted_since_the_layer_type_decides_it():
    cfg = adapter_config_from_peft(saved_config(fan_in_fan_out=True))
    assert cfg["targets"] == ["q_proj", "v_proj"]

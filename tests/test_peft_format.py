"""PEFT folders both ways, proven with the real `peft` package on the same base model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.adapter_models import VARIANTS, adapter_cfg, pretend_trained, tiny_backbone, token_batch

from loralab.lora import (
    AdapterConfigError,
    DoRALayer,
    adapter_config_from_peft,
    apply_adapter,
    export_peft,
    import_peft,
    lora_layers,
)

peft = pytest.importorskip("peft")


def trained_loralab_model(variant: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the untouched base, a copy of it with a trained-looking adapter of `variant`)."""
    base = tiny_backbone()
    model = copy.deepcopy(base)
    apply_adapter(model, adapter_cfg(**VARIANTS[variant]))
    pretend_trained(model)
    return base, model.eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_loralab_adapter_loaded_by_peft_gives_the_same_outputs(variant, tmp_path) -> None:
    base, model = trained_loralab_model(variant)
    export_peft(model, tmp_path)
    peft_model = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    x = token_batch()
    with torch.no_grad():
        assert (peft_model(x) - model(x)).abs().max() < 1e-5


def test_the_exported_files_have_peft_names_and_fields(tmp_path) -> None:
    _, model = trained_loralab_model("dora")
    export_peft(model, tmp_path, base_model_name_or_path="tiny_encoder.safetensors")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["task_type"] is None
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 8.0, 0.0)
    assert (config["use_dora"], config["use_rslora"]) == (True, False)
    assert config["init_lora_weights"] is True
    assert config["modules_to_save"] == ["classifier"]
    assert config["base_model_name_or_path"] == "tiny_encoder.safetensors"
    names = [name for name, _ in lora_layers(model)]
    assert config["target_modules"] == names
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    q = "base_model.model.layers.0.attn.q_proj"
    assert tensors[f"{q}.lora_A.weight"].shape == (4, 32)
    assert tensors[f"{q}.lora_B.weight"].shape == (32, 4)
    assert tensors[f"{q}.lora_magnitude_vector"].shape == (32,)
    assert "base_model.model.classifier.weight" in tensors
    assert len(tensors) == 3 * len(names) + 2


def test_pissa_exports_as_a_rank_2r_lora_on_the_original_weight(tmp_path) -> None:
    _, model = trained_loralab_model("pissa")
    export_peft(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    # same scaling alpha / r = 8 / 4 at twice the rank
    assert (config["r"], config["lora_alpha"]) == (8, 16.0)


@pytest.mark.parametrize(
    "options", [{}, {"use_rslora": True}, {"use_dora": True}], ids=["lora", "rslora", "dora"]
)
def test_a_peft_adapter_imported_into_loralab_gives_the_same_outputs(options, tmp_path) -> None:
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["classifier"],
        **options,
    )  # fmt: skip
    peft_model = peft.get_peft_model(tiny_backbone(), config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained adapter: B != 0, a moved head (and moved magnitudes)
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name or "magnitude" in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
    peft_model.eval().save_pretrained(tmp_path)

    model = tiny_backbone()
    report = import_peft(tmp_path, model)
    x = token_batch()
    with torch.no_grad():
        assert (peft_model(x) - model.eval()(x)).abs().max() < 1e-5
    assert report.replaced == [f"layers.{i}.attn.{p}" for i in (0, 1) for p in ("q_proj", "v_proj")]
    assert report.trainable_modules == ["classifier"]
    layer = next(layer for _, layer in lora_layers(model))
    assert isinstance(layer, DoRALayer) == bool(options.get("use_dora"))
    assert layer.scaling_rule == ("rs" if options.get("use_rslora") else "standard")


def test_peft_config_fields_map_onto_ours() -> None:
    cfg = adapter_config_from_peft(
        {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": r".*\.q_proj",
         "use_rslora": True, "init_lora_weights": "gaussian", "lora_dropout": 0.1}
    )  # fmt: skip
    assert cfg == {
        "name": "lora",
        "rank": 16,
        "alpha": 32,
        "dropout": 0.1,
        "scaling": "rs",
        "init": "gaussian",
        "targets": r"re:.*\.q_proj",
        "exclude": [],
        "trainable": [],
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("peft_type", "IA3"),
        ("init_lora_weights", "pissa_niter_4"),
        ("rank_pattern", {"q_proj": 8}),
        ("bias", "all"),
    ],
)
def test_what_loralab_cannot_reproduce_is_refused_by_name(field, value, tmp_path) -> None:
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps({**config, field: value}))
    model = tiny_backbone()
    with pytest.raises(AdapterConfigError, match=field):
        import_peft(tmp_path, model)
    assert not any(True for _ in lora_layers(model))


def test_missing_files_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        import_peft(tmp_path, tiny_backbone())
    with pytest.raises(AdapterConfigError, match="no LoRA layers"):
        export_peft(tiny_backbone(), tmp_path)


def test_the_round_trip_holds_on_a_hugging_face_backbone(tmp_path) -> None:
    """MiniLM (BERT) from the package that ships it offline: PEFT loads our rsDoRA adapter."""
    hf = pytest.importorskip("loralab.models.hf")
    try:
        base = hf.build_hf_model(hf.minilm_path(), num_labels=2).eval()
    except (FileNotFoundError, ImportError) as error:
        pytest.skip(f"MiniLM is not installed: {error}")
    model = copy.deepcopy(base)
    cfg = {"name": "dora", "rank": 4, "alpha": 8, "scaling": "rs", "targets": ["query", "value"]}
    apply_adapter(model, {**cfg, "trainable": ["classifier"]})
    pretend_trained(model)
    export_peft(model, tmp_path)
    peft_model = peft.PeftModel.from_pretrained(base, tmp_path).eval()
    x = torch.randint(100, 1000, (2, 12))
    with torch.no_grad():
        difference = peft_model(input_ids=x).logits - model.eval()(input_ids=x).logits
    assert difference.abs().max() < 1e-5

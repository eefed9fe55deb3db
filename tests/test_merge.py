"""Folding adapters in for good: a plain backbone file that loads with no LoRA code."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pytest
import torch
from tests.adapter_models import VARIANTS, adapter_cfg, pretend_trained, tiny_backbone, token_batch
from tests.conftest import compose_config, run_cli

from loralab.errors import ConfigError
from loralab.lora import QuantizedLinear, apply_adapter, lora_layers, merge_and_unwrap
from loralab.models import TransformerEncoderClassifier, load_backbone

MERGEABLE = {**VARIANTS, "qlora-nf4": {"quant": "nf4", "double_quant": True}}


@pytest.mark.parametrize("variant", MERGEABLE)
def test_merge_and_unwrap_leaves_the_plain_backbone_with_the_same_outputs(variant, caplog) -> None:
    model = tiny_backbone()
    apply_adapter(model, adapter_cfg(**MERGEABLE[variant]))
    pretend_trained(model)
    x = token_batch()
    with torch.no_grad():
        expected = model(x)
    with caplog.at_level(logging.WARNING, logger="loralab.lora"):
        merge_and_unwrap(model)

    assert not any(True for _ in lora_layers(model))
    assert not any(isinstance(m, QuantizedLinear) for m in model.modules())
    plain = tiny_backbone(seed=7)  # other weights, same class: no LoRA code involved
    assert set(plain.state_dict()) == set(model.state_dict())
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (plain(x) - expected).abs().max() < 1e-5
    if variant == "qlora-nf4":  # the quantized base was dequantized, and it said so
        assert "dequantized 12 frozen layers stored as nf4" in caplog.text


@pytest.fixture(scope="module")
def lora_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a tiny LoRA run (on a random base: merging does not care)."""
    from tests.conftest import TINY

    from loralab.train import train

    out = tmp_path_factory.mktemp("lora_run")
    short = ["test=false", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]
    cfg = compose_config(
        "train", [*TINY, *short, "logger=[]", "model.checkpoint=null"], out / "run"
    )
    train(cfg)
    return Path(json.loads((out / "run" / "summary.json").read_text())["checkpoint_path"])


def test_merge_tool_writes_a_backbone_the_plain_class_loads(lora_checkpoint, tmp_path, capsys):
    from loralab.keys import MERGE_DIFF as METRIC
    from loralab.merge import merge
    from loralab.run.builder import load_run

    output = tmp_path / "merged.safetensors"
    cfg = compose_config(
        "merge", [f"ckpt_path={lora_checkpoint}", f"output={output}"], tmp_path / "merge"
    )
    result = merge(cfg)

    assert result[METRIC] < 1e-5
    printed = capsys.readouterr().out
    assert "max |merged - unmerged| output on a validation batch of 64" in printed
    assert json.loads((tmp_path / "merge" / "merge.json").read_text())[METRIC] == result[METRIC]
    # the backbone class alone, built from the run's model config, loads every weight
    net = hydra.utils.instantiate(load_run(lora_checkpoint).cfg.model.net)
    assert isinstance(net, TransformerEncoderClassifier)
    load_backbone(net, output)

    # a second merge to the same path is refused and leaves the file as it was
    before = output.read_bytes()
    with pytest.raises(ConfigError, match="output: .* exists already"):
        merge(cfg)
    assert output.read_bytes() == before


@pytest.mark.slow
def test_merge_cli_reports_a_missing_checkpoint_in_one_line(tmp_path) -> None:
    proc = run_cli(
        "loralab.merge",
        f"ckpt_path={tmp_path / 'nope.ckpt'}",
        f"output={tmp_path / 'out.safetensors'}",
        f"paths.log_dir={tmp_path}",
        check=False,
    )
    assert proc.returncode == 1
    assert "error: ckpt_path: no checkpoint at" in proc.stderr
    assert not (tmp_path / "out.safetensors").exists()

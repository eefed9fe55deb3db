"""`python -m loralab.memory --hf-config` reads the common config families exactly: the
parameter count of tiny GPT-2, Llama and BERT models written by save_pretrained, the estimate
of a GPT-2 LoRA step against a measured one, and a one-sentence refusal naming a missing key."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tests.hf_models import bert_folder, gpt2_folder, llama_folder

from loralab.lora import apply_adapter
from loralab.measure.hf_config import shape_from_hf_config
from loralab.measure.planner import Method, Workload, estimate
from loralab.measure.step import measure_step_memory
from loralab.memory import main

transformers = pytest.importorskip("transformers")
WRITERS = {"gpt2": gpt2_folder, "llama": llama_folder, "bert": bert_folder}


@pytest.mark.parametrize("family", WRITERS)
def test_each_family_gives_the_parameter_count_of_the_real_model(family, tmp_path):
    folder = WRITERS[family](tmp_path / family)
    model = transformers.AutoModel.from_pretrained(folder)
    shape = shape_from_hf_config(folder / "config.json")
    # AutoModel has no head: BERT's classifier, Llama's lm_head (GPT-2's is tied: 0) come off
    assert shape.params() - shape.head_params() == sum(p.numel() for p in model.parameters())


def test_a_gpt2_lora_step_on_c_attn_is_estimated_within_25_percent(tmp_path):
    folder = gpt2_folder(tmp_path / "gpt2")
    shape = shape_from_hf_config(folder / "config.json")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0
    ).train()
    cfg = {"name": "lora", "rank": 8, "alpha": 16, "targets": ["c_attn"], "trainable": "auto"}
    apply_adapter(model, cfg)
    ids = torch.randint(1000, 2000, (4, 32))

    def loss(m: torch.nn.Module) -> torch.Tensor:
        return F.cross_entropy(m(input_ids=ids).logits.flatten(0, 1), ids.flatten())

    measured = measure_step_memory(model, loss)
    method = Method("lora", rank=8, targets=("c_attn",), train_head=False)
    estimated = estimate(shape, Workload(4, 32, "fp32"), method)
    assert estimated.trainable_params == 2 * 8 * (32 + 96)  # one LoRA on the fused c_attn
    assert estimated.static == measured.parameters + measured.gradients + measured.optimizer_state
    assert estimated.total == pytest.approx(measured.total, rel=0.25)


def test_the_cli_reads_a_gpt2_config_and_q_v_targets_mean_its_c_attn(tmp_path, capsys):
    folder = gpt2_folder(tmp_path / "gpt2")
    table = main(["--hf-config", str(folder / "config.json"), "--dtype", "fp32"])
    lora = next(line for line in table.splitlines() if line.startswith("lora"))
    assert lora.split()[3] == f"{2 * 8 * (32 + 96):,}"


def test_a_config_missing_a_key_is_refused_naming_it(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_embd": 32, "n_head": 2, "vocab_size": 9}))
    with pytest.raises(SystemExit) as exit_:
        main(["--hf-config", str(path)])
    message = str(exit_.value)
    assert message.startswith("error: --hf-config: ")
    assert "has no num_hidden_layers or n_layer or num_layers" in message

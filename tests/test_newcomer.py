"""What a newcomer meets first: a GPT-2 folder holding its own tokenizer trains on text_csv
with no data.tokenizer (the data reads the model's own), merges into a folder `pipeline` runs
and exports into one AutoPeftModel loads with the run's logits; the tiny encoder keeps
MiniLM's tokenizer; a new head that never trained still goes into the PEFT folder; PEFT's
r=8 adapter on a ViT-like patch Conv2d imports exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY, compose_config
from tests.hf_models import bert_folder
from tests.tiny_llm import write_tokenizer
from torch import nn

from loralab.errors import ConfigError
from loralab.lora import apply_adapter, export_peft, import_peft
from loralab.models.hf import build_hf_model, minilm_path

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

TEXTS = ["The soup was far from dreadful.", "I loathed the hotel room.", "Superb!"]


def own_tokenizer_gpt2(folder: Path) -> Path:
    """A 2-layer GPT-2 whose folder holds its own 400-token byte-level BPE (not MiniLM's)."""
    tokenizer = write_tokenizer(folder, chat=False)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return own_tokenizer_gpt2(tmp_path_factory.mktemp("models") / "gpt2")


def test_the_data_reads_a_hugging_face_models_own_tokenizer_and_the_tiny_encoder_minilms(
    gpt2, tmp_path
):
    cfg = compose_config("train", ["model=hf", f"model.pretrained_model_name_or_path={gpt2}",
                                   "data=text_csv"], tmp_path / "a")  # fmt: skip
    # the model's own tokenizer and embedding: no 30,522-token cap (a real GPT-2 has 50,257)
    assert (cfg.data.tokenizer, cfg.data.vocab_size) == (str(gpt2), None)
    tiny = compose_config("train", ["data=text_csv"], tmp_path / "b").data
    assert (tiny.tokenizer, tiny.vocab_size) == (minilm_path(), 30522)  # sizes its embedding
    lm = compose_config("train", ["model=smollm2", "data=lm_text", "task=language_modeling",
                                  f"model.pretrained_model_name_or_path={gpt2}"], tmp_path / "c")  # fmt: skip
    assert lm.data.tokenizer == str(gpt2)


def test_an_explicit_other_tokenizer_is_still_refused_in_one_sentence(gpt2, tmp_path):
    from loralab.run.builder import build_run

    cfg = compose_config("train", [*TINY, "model=hf", f"model.pretrained_model_name_or_path={gpt2}",
                                   "data=text_csv", f"data.tokenizer={minilm_path()}"], tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match=f"set data.tokenizer={gpt2}"):
        build_run(cfg)


@pytest.mark.slow
def test_the_issues_gpt2_command_trains_merges_for_pipeline_and_exports_for_autopeftmodel(
    gpt2, tmp_path
):
    from loralab.export import export, read_load_kwargs
    from loralab.merge import merge
    from loralab.run.builder import load_run
    from loralab.train import train

    overrides = [*TINY, "model=hf", f"model.pretrained_model_name_or_path={gpt2}",
                 "data=text_csv", "adapter.targets=[c_attn,wte]", "logger=[]",
                 "data.n_train=64", "data.n_val=32", "data.n_test=32"]  # fmt: skip
    train(compose_config("train", overrides, tmp_path / "run"))
    ckpt = json.loads((tmp_path / "run" / "summary.json").read_text())["checkpoint_path"]
    run = load_run(ckpt)
    assert len(run.datamodule.tokenizer) == 400  # the folder's own, not MiniLM's 30,522
    model, tokenizer = run.model.eval(), run.datamodule.tokenizer
    with torch.no_grad():
        expected = torch.cat([model(**tokenizer(t, return_tensors="pt")).logits for t in TEXTS])

    merged = tmp_path / "merged"
    merge(compose_config("merge", [f"ckpt_path={ckpt}", f"output={merged}"], tmp_path / "m"))
    classify = transformers.pipeline("text-classification", model=str(merged), top_k=None)
    for text, row in zip(TEXTS, expected, strict=True):
        (scores,) = classify([text], function_to_apply="none")
        found = {s["label"]: s["score"] for s in scores}
        assert abs(found["negative"] - row[0]) <= 1e-5 and abs(found["positive"] - row[1]) <= 1e-5

    folder = tmp_path / "peft"
    export(compose_config("export", [f"ckpt_path={ckpt}", f"output={folder}"], tmp_path / "e"))
    kwargs = read_load_kwargs(tmp_path / "e" / "export.json")
    loaded = peft.AutoPeftModelForSequenceClassification.from_pretrained(folder, **kwargs).eval()
    own = transformers.AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        got = torch.cat([loaded(**own(t, return_tensors="pt")).logits for t in TEXTS])
    assert (got - expected).abs().max() <= 1e-5


def test_a_new_head_that_never_trained_is_exported_so_peft_gives_the_same_logits(tmp_path):
    from tests.adapter_models import pretend_trained

    base = bert_folder(tmp_path / "bert")
    model = build_hf_model(base, num_labels=3)
    cfg = {"name": "lora", "rank": 4, "alpha": 8, "targets": ["query", "value"], "trainable": []}
    assert apply_adapter(model, cfg).trainable_modules == []
    pretend_trained(model)
    export_peft(model, tmp_path / "peft", base_model_name_or_path=str(base))  # task_type: inferred
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert (config["task_type"], config["modules_to_save"]) == ("SEQ_CLS", ["classifier"])
    loaded = peft.AutoPeftModelForSequenceClassification.from_pretrained(
        tmp_path / "peft", num_labels=3
    ).eval()
    ids = torch.randint(1000, 2000, (2, 9))
    with torch.no_grad():
        diff = (loaded(input_ids=ids).logits - model.eval()(input_ids=ids).logits).abs().max()
    assert diff <= 1e-5


class PatchEmbedding(nn.Module):
    """ViT's patch embedding: a 3 -> 32 Conv2d with an 8x8 kernel and stride 8."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 32, kernel_size=8, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch(x)


def test_peft_r8_adapter_on_a_3_channel_patch_conv_imports_exactly(tmp_path):
    torch.manual_seed(0)
    base = PatchEmbedding()
    twin = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["patch"])
    )
    with torch.no_grad():
        for param in (p for p in twin.parameters() if p.requires_grad):
            param.add_(0.05 * torch.randn(param.shape))
    twin.eval().save_pretrained(tmp_path / "adapter")

    fresh = PatchEmbedding()
    fresh.load_state_dict(base.state_dict())
    report = import_peft(tmp_path / "adapter", fresh)  # r=8 > 3 input channels: still allowed
    assert report.replaced == ["patch"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (twin(x) - fresh.eval()(x)).abs().max() <= 1e-5
        assert (twin(x) - base(x)).abs().max() > 1e-3  # the adapter does change the output


def test_a_conv_rank_above_its_weight_matrix_is_still_refused():
    from loralab.errors import AdapterConfigError

    model = PatchEmbedding()  # weight matrix 32 x 192: rank at most 32
    with pytest.raises(AdapterConfigError, match=r"min\(out, in\) = 32 .* patch"):
        apply_adapter(model, {"name": "lora", "rank": 33, "alpha": 33, "targets": ["patch"]})

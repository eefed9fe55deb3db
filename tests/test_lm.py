"""Language modelling end to end, in miniature: pretrain on corpus a, LoRA on corpus b, merge,
and generate from all three kinds of checkpoint."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests.conftest import compose_config, run_cli

from loralab.data.char_tokenizer import CharTokenizer
from loralab.generate import OUTPUT_FILE, generate, load_for_generation
from loralab.lora import lora_layers
from loralab.merge import merge
from loralab.models import TinyGPT
from loralab.models.sampling import sample_ids
from loralab.train import train

# one tiny shape for pretraining and fine-tuning (they must agree), and one short epoch
TINY_GPT = [
    "model.net.d_model=32",
    "model.net.n_layers=1",
    "model.net.d_ff=64",
    "model.net.max_len=32",
    "data.seq_len=32",
    "data.n_train=1024",
    "data.n_val=32",
    "data.n_test=32",
    "data.batch_size=16",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]
LORA = [
    "adapter=lora",
    "adapter.targets=all-linear",
    "adapter.rank=4",
    "adapter.alpha=8",
    "adapter.lr=3e-2",
]


@pytest.fixture(scope="module")
def charlm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A TinyGPT pretrained briefly on corpus a, and a LoRA run of it on corpus b."""
    # a model this small runs fastest on one thread; more only contend on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_charlm(tmp_path_factory.mktemp("charlm"))
    finally:
        torch.set_num_threads(threads)


def train_charlm(root: Path) -> dict:
    base = root / "tiny_gpt.safetensors"
    pretrain = compose_config(
        "train",
        [
            "experiment=pretrain_charlm",
            *TINY_GPT,
            "data.n_train=4096",
            "adapter.lr=2e-2",
            "logger=[]",
            f"save_backbone={base}",
            f"data.save_tokenizer={root / 'tiny_gpt.tokenizer.json'}",
        ],
        root / "pretrain",
    )
    train(pretrain)
    finetune = compose_config(
        "train",
        [
            "experiment=charlm_lora_vs_full",
            *TINY_GPT,
            *LORA,
            f"model.checkpoint={base}",
            f"data.tokenizer={root / 'tiny_gpt.tokenizer.json'}",
        ],
        root / "finetune",
    )
    metrics = train(finetune)
    return {"root": root, "base": base, "run": root / "finetune", "metrics": metrics}


def test_pretraining_saves_the_backbone_and_its_tokenizer(charlm):
    tokenizer = CharTokenizer.load(charlm["root"] / "tiny_gpt.tokenizer.json")
    model, loaded = load_for_generation(charlm["base"])
    assert isinstance(model, TinyGPT) and loaded.chars == tokenizer.chars
    assert model.tok_emb.num_embeddings == tokenizer.vocab_size


def test_lora_fine_tuning_on_corpus_b_lowers_val_perplexity(charlm):
    metrics = charlm["metrics"]
    # val/ppl_start: the pretrained base on corpus b, before the first step
    assert metrics["val/ppl"] < 0.8 * metrics["val/ppl_start"]
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-4)
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-4)
    summary = json.loads((charlm["run"] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["adapter"] == "lora"
    assert not any("exact_match" in key for key in metrics)  # characters have no answers


def test_adapting_to_corpus_b_costs_perplexity_on_corpus_a(charlm):
    metrics = charlm["metrics"]
    # source/ppl_start: the pretrained base on corpus a's held-out test region, which it
    # learned; after a rate-3e-2 LoRA on the play it must read the prose worse
    assert 1.0 < metrics["source/ppl_start"] < metrics["source/ppl"]
    # and the target, measured the same way before and after, got better
    assert metrics["test/ppl"] < metrics["test/ppl_start"]
    summary = json.loads((charlm["run"] / "summary.json").read_text())
    assert summary["source"].startswith("corpus a perplexity")


def test_validation_samples_reach_tensorboards_text_tab(charlm):
    samples = []
    for events in (charlm["run"] / "tensorboard").glob("*/events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["tensors"]:
            if tag.startswith("samples"):
                samples += [e.tensor_proto.string_val[0].decode() for e in accumulator.Tensors(tag)]
    assert len(samples) == 1  # one validation epoch, one sample (none from the sanity check)
    assert "ACT I. SCENE I." in samples[0] and len(samples[0]) > 200  # prompt + 200 new chars


def test_sampling_is_reproducible_with_a_seed(charlm):
    model, tokenizer = load_for_generation(charlm["base"])
    prompt = tokenizer.encode("The ")

    def text(seed: int, **kwargs) -> str:
        return tokenizer.decode(sample_ids(model, prompt, 60, seed=seed, **kwargs))

    assert text(0) == text(0) and len(text(0)) == 60
    assert len({text(seed) for seed in range(4)}) > 1
    # greedy decoding ignores the seed; top_k=1 is greedy
    assert text(0, temperature=0) == text(5, temperature=0) == text(3, top_k=1)


def test_generation_keeps_the_context_one_short_of_max_len(charlm):
    model, tokenizer = load_for_generation(charlm["base"])
    lengths: list[int] = []
    hook = model.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        sample_ids(model, tokenizer.encode("The "), 40)
    finally:
        hook.remove()
    assert lengths[0] == 4 and max(lengths) == model.max_len - 1 == 31


def test_generate_from_base_training_checkpoint_and_merged_file(charlm, tmp_path):
    best = charlm["run"] / "checkpoints" / "best.ckpt"
    merged = tmp_path / "merged.safetensors"
    merge(compose_config("merge", [f"ckpt_path={best}", f"output={merged}"], tmp_path / "m"))

    texts = {}
    for name, path in {"base": charlm["base"], "run": best, "merged": merged}.items():
        out = tmp_path / name
        overrides = [f"ckpt_path={path}", "prompt=ACT I.\\n", "max_new_tokens=40", "temperature=0"]
        generate(compose_config("generate", overrides, out))
        texts[name] = json.loads((out / OUTPUT_FILE).read_text())["text"]
        assert texts[name].startswith("ACT I.\n") and len(texts[name]) == len("ACT I.\n") + 40

    run_model, _ = load_for_generation(best)
    merged_model, _ = load_for_generation(merged)
    assert any(True for _ in lora_layers(run_model)) and not any(lora_layers(merged_model))
    ids = torch.randint(1, 20, (2, 32), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(merged_model(ids), run_model(ids), rtol=0, atol=1e-4)
    assert texts["merged"] == texts["run"]


def test_generate_names_the_key_to_fix(charlm, tmp_path):
    with pytest.raises(FileNotFoundError, match="ckpt_path: no file at"):
        load_for_generation(tmp_path / "nope.ckpt")
    lonely = tmp_path / "lonely.safetensors"  # a backbone file with no tokenizer beside it
    lonely.write_bytes(charlm["base"].read_bytes())
    with pytest.raises(FileNotFoundError, match="pass tokenizer="):
        load_for_generation(lonely)
    _, tokenizer = load_for_generation(
        lonely, tokenizer=str(charlm["root"] / "tiny_gpt.tokenizer.json")
    )
    assert tokenizer.vocab_size > 50


@pytest.mark.slow
def test_generate_cli_prints_the_text(charlm, tmp_path):
    proc = run_cli(
        "loralab.generate",
        f"ckpt_path={charlm['base']}",
        "prompt=The ",
        "max_new_tokens=30",
        f"hydra.run.dir={tmp_path}",
    )
    saved = json.loads((tmp_path / OUTPUT_FILE).read_text())
    assert saved["text"].startswith("The ") and saved["text"] in proc.stdout

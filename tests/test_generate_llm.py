"""`python -m loralab.generate` on Hugging Face LLMs: a run's prompt goes through the chat
template its training used, a folder's through its tokenizer's, and chat=false continues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from tests.conftest import compose_config, run_cli  # noqa: E402
from tests.test_llm_task import ROWS, data_overrides  # noqa: E402
from tests.tiny_llm import write_tiny_llama  # noqa: E402

import loralab.generate as generate_module  # noqa: E402
from loralab.generate import OUTPUT_FILE, generate  # noqa: E402


@pytest.fixture(scope="module")
def instruct_run(tmp_path_factory) -> dict:
    from loralab.train import train

    root = tmp_path_factory.mktemp("instruct_run")
    model = write_tiny_llama(root / "llama")
    overrides = [*data_overrides(root, model, ROWS * 2), "trainer.max_epochs=1", "logger=[]"]
    train(compose_config("train", [*overrides, "data.system_prompt=Be brief."], root / "run"))
    return {"model": model, "ckpt": root / "run" / "checkpoints" / "best.ckpt"}


def run_generate(tmp_path: Path, monkeypatch, *overrides: str) -> tuple[dict, list[list[int]]]:
    """generate() with the prompt ids it hands to the model recorded."""
    seen: list[list[int]] = []
    real = generate_module.generate_batch

    def recording(model, prompts, *args, **kwargs):
        seen.extend(list(p) for p in prompts)
        return real(model, prompts, *args, **kwargs)

    monkeypatch.setattr(generate_module, "generate_batch", recording)
    generate(
        compose_config("generate", ["max_new_tokens=6", "temperature=0", *overrides], tmp_path)
    )
    return json.loads((tmp_path / OUTPUT_FILE).read_text()), seen


def test_a_runs_checkpoint_answers_through_its_training_chat_format(
    instruct_run, tmp_path, monkeypatch
):
    from transformers import AutoTokenizer

    saved, seen = run_generate(
        tmp_path, monkeypatch, f"ckpt_path={instruct_run['ckpt']}", "prompt=What is 2 + 2?"
    )
    tokenizer = AutoTokenizer.from_pretrained(instruct_run["model"])
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tokenizer.decode(seen[0]) == expected  # the run's system prompt and template
    assert saved["prompt"] == "What is 2 + 2?" and "<|im_end|>" not in saved["text"]


def test_a_model_folder_uses_its_chat_template_and_chat_false_continues(
    instruct_run, tmp_path, monkeypatch
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(instruct_run["model"])
    _, seen = run_generate(
        tmp_path / "a", monkeypatch, f"ckpt_path={instruct_run['model']}", "prompt=Hi"
    )
    assert tokenizer.decode(seen[0]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    saved, seen = run_generate(
        tmp_path / "b",
        monkeypatch,
        f"ckpt_path={instruct_run['model']}",
        "prompt=The harbour",
        "chat=false",
    )
    assert tokenizer.decode(seen[-1]) == "The harbour" and saved["text"].startswith("The harbour")


def test_sampling_is_reproducible_with_a_seed(instruct_run, tmp_path, monkeypatch):
    texts = [
        run_generate(tmp_path / str(i), monkeypatch, f"ckpt_path={instruct_run['model']}", "prompt=Hi",
                     "temperature=1.0", "top_k=null", f"seed={seed}", "max_new_tokens=12")[0]["text"]
        for i, seed in enumerate([0, 0, 1, 2])
    ]  # fmt: skip
    assert texts[0] == texts[1] and len(set(texts)) > 1


@pytest.mark.slow
def test_generate_cli_prints_the_answer(instruct_run, tmp_path):
    proc = run_cli(
        "loralab.generate",
        f"ckpt_path={instruct_run['ckpt']}",
        "prompt=What is 12 + 30?",
        "max_new_tokens=5",
        "temperature=0",
        f"hydra.run.dir={tmp_path}",
    )
    saved = json.loads((tmp_path / OUTPUT_FILE).read_text())
    assert saved["text"] in proc.stdout


def test_the_merged_run_is_a_folder_that_from_pretrained_loads_and_answers_the_same(
    instruct_run, tmp_path, monkeypatch
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.merge import merge

    folder = tmp_path / "merged"
    merge(compose_config("merge", [f"ckpt_path={instruct_run['ckpt']}", f"output={folder}"],
                         tmp_path / "m"))  # fmt: skip
    prompt = ["prompt=What is 12 + 30?", "max_new_tokens=8"]
    adapter, seen = run_generate(tmp_path / "a", monkeypatch, f"ckpt_path={instruct_run['ckpt']}",
                                 *prompt, "system_prompt=Be brief.")  # fmt: skip
    merged, _ = run_generate(tmp_path / "b", monkeypatch, f"ckpt_path={folder}", *prompt,
                             "system_prompt=Be brief.")  # fmt: skip
    assert merged["text"] == adapter["text"]  # the folder's chat template is the run's

    # transformers alone, on the very prompt ids the run was given
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([seen[0]])
    out = model.generate(
        ids, max_new_tokens=8, do_sample=False, eos_token_id=model.config.eos_token_id
    )
    new = out[0, ids.shape[1] :]
    assert (
        AutoTokenizer.from_pretrained(folder).decode(new, skip_special_tokens=True)
        == adapter["text"]
    )
    # and the folder holds the trained update folded in, not the base as it was
    base = AutoModelForCausalLM.from_pretrained(instruct_run["model"])
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    merged_q, base_q = model.state_dict()[q_proj], base.state_dict()[q_proj]
    assert (merged_q - base_q).abs().max() > 1e-4


def test_the_exported_run_loads_with_autopeftmodel_for_causal_lm(instruct_run, tmp_path):
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    from loralab.export import export
    from loralab.run.builder import load_run

    output = tmp_path / "peft"
    export(compose_config("export", [f"ckpt_path={instruct_run['ckpt']}", f"output={output}"],
                          tmp_path / "e"))  # fmt: skip
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"
    loaded = peft.AutoPeftModelForCausalLM.from_pretrained(output).eval()
    run = load_run(instruct_run["ckpt"]).model.eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        expected = run(input_ids=ids).logits
        found = loaded(input_ids=ids).logits
    assert (found - expected).abs().max() <= 1e-5
    # training moved the adapter off its zero start: equal logits are not the base's by chance
    base = AutoModelForCausalLM.from_pretrained(instruct_run["model"]).eval()
    with torch.no_grad():
        assert (base(input_ids=ids).logits - expected).abs().max() > 1e-3

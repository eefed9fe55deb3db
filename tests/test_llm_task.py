"""The language-modelling task on Hugging Face LLMs: masked labels from the data, exact match
by greedy batched generation, answers in the TEXT tab; tiny random Llama and GPT-2 folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tests.tiny_llm import write_jsonl, write_tiny_gpt2, write_tiny_llama  # noqa: E402

from loralab.data.base import GenerationSet  # noqa: E402
from loralab.models.generation import generate_batch, generate_many  # noqa: E402
from loralab.tasks.exact_match import normalise, score_generation  # noqa: E402

ROWS = [
    {"prompt": "What is 12 + 30?", "response": "42", "family": "arithmetic"},
    {"prompt": "Convert 3 May 2021 to ISO 8601 format.", "response": "2021-05-03", "family": "date"},
    {"prompt": "How many grams are in 2.5 kg?", "response": "2500", "family": "unit"},
    {"prompt": "Order 48213 was placed by Maria Lopez.", "response": "ORD-48213", "family": "extract"},
]  # fmt: skip
QUIET = [
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


def data_overrides(root: Path, model: Path, train_rows: list[dict]) -> list[str]:
    """data=instruct on small JSONL files, read with the model's own tokenizer."""
    files = {
        "train": write_jsonl(root / "train.jsonl", train_rows),
        "val": write_jsonl(root / "val.jsonl", ROWS),
        "test": write_jsonl(root / "test.jsonl", ROWS),
    }
    return [
        "data=instruct",
        "model=smollm2",
        "task=language_modeling",
        f"model.pretrained_model_name_or_path={model}",
        f"data.tokenizer={model}",
        *(f"data.{split}_file={path}" for split, path in files.items()),
        "data.write_files=null",
        "monitor.metric=val/exact_match",
        "monitor.mode=max",
        "optimized_metric=val/exact_match",
        "adapter.trainable=[]",
        "task.max_new_tokens=12",
        *QUIET,
    ]


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    prompts = [[5, 9, 30, 41], [7], [12, 13, 14, 15, 16, 17, 18], [40, 2, 41]]
    alone = [generate_batch(model, [p], 10, stop_ids=set(), pad_id=2)[0] for p in prompts]
    together = generate_batch(model, prompts, 10, stop_ids=set(), pad_id=2)
    assert together == alone and all(len(ids) == 10 for ids in alone)
    assert generate_many(model, prompts, 10, set(), 2, batch_size=3) == alone
    # stopping: the answer ends before the first stop id, which is not part of it
    stop = alone[0][3]
    assert (
        generate_batch(model, prompts[:1], 10, {stop}, pad_id=2)[0]
        == alone[0][: alone[0].index(stop)]
    )
    assert model.training is False  # from_pretrained's eval mode, left as it was


class Oracle(nn.Module):
    """A stand-in for a Hugging Face model whose `generate` writes known answers."""

    def __init__(self, answers: dict[tuple[int, ...], list[int]]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.generation_config = object()
        self.answers = answers
        self.seen: list[torch.Tensor] = []

    def generate(self, input_ids, attention_mask, generation_config):
        self.seen.append(attention_mask)
        width = max(len(a) for a in self.answers.values())
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            answer = self.answers[tuple(ids[mask.bool()].tolist())]
            rows.append(torch.cat([ids, torch.tensor(answer + [0] * (width - len(answer)))]))
        return torch.stack(rows)


def test_exact_match_compares_decoded_answers_cut_at_the_stop_token():
    vocab = {1: "2021-05-03", 2: "42", 3: "43", 4: " ", 5: "x"}
    stop = 9
    oracle = Oracle({(7, 7): [1, stop, 5], (8,): [2, 4, stop], (6, 6, 6): [3, stop]})
    examples = GenerationSet(
        prompts=["date?", "sum?", "other sum?"],
        prompt_ids=[[7, 7], [8], [6, 6, 6]],
        answers=["2021-05-03", "42", "42"],
        stop_ids=frozenset({stop}),
        pad_id=0,
        decode=lambda ids: "".join(vocab[i] for i in ids),
        groups=["date", "arithmetic", "arithmetic"],
    )
    score = score_generation(oracle, examples, max_new_tokens=4, batch_size=2)
    assert score.exact_match == pytest.approx(2 / 3)  # "42 " counts: whitespace is collapsed
    assert score.by_group == {"arithmetic": 0.5, "date": 1.0}
    assert [a.generated for a in score.answers] == ["2021-05-03", "42 ", "43"]
    assert [tuple(m.shape) for m in oracle.seen] == [(2, 2), (1, 3)]  # batched by length
    assert normalise(" a \n b ") == "a b"


def test_a_lora_run_logs_exact_match_and_shows_answers_in_the_text_tab(
    tiny_llama, train_cfg, tmp_path
):
    from loralab.train import train

    cfg = train_cfg(
        *data_overrides(tmp_path, tiny_llama, ROWS * 4), "task.text_samples=3", tiny=False
    )
    metrics = train(cfg)
    for split in ("val", "test"):
        assert 0.0 <= metrics[f"{split}/exact_match"] <= 1.0
        assert {f"{split}/exact_match/{r['family']}" for r in ROWS} <= set(metrics)
    assert metrics["val/ppl"] > 1 and "val/ppl_start" in metrics
    run = Path(cfg.paths.output_dir)
    texts = {}
    for events in run.glob("tensorboard/*/events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events), size_guidance={"tensors": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["tensors"]:
            texts[tag] = [e.tensor_proto.string_val[0].decode() for e in accumulator.Tensors(tag)]
    val = [t for tag, values in texts.items() if tag.startswith("val_answers") for t in values]
    assert len(val) == 4  # max_epochs=4: one table per validation epoch, none from the sanity check
    assert val[0].startswith("| prompt | generated | expected | exact |")
    assert len(val[0].splitlines()) == 2 + 3 and "What is 12 + 30?" in val[0] and "| 42 |" in val[0]
    assert any(tag.startswith("test_answers") for tag in texts)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"]["test/exact_match"] == metrics["test/exact_match"]


def test_full_fine_tuning_learns_the_answers_exactly(tmp_path, train_cfg):
    """A tiny random Llama memorises four answers: every greedy answer comes out exactly."""
    from loralab.train import train

    model = write_tiny_llama(tmp_path / "llama", hidden_size=64, intermediate_size=128)
    cfg = train_cfg(
        *data_overrides(tmp_path, model, ROWS * 8),
        "adapter=full",
        "adapter.lr=1e-2",
        "trainer.max_epochs=12",
        "task.warmup_ratio=0.1",
        "logger=[]",
        tiny=False,
    )
    metrics = train(cfg)
    assert metrics["test/exact_match"] == 1.0 and metrics["test/loss"] < 0.5
    assert metrics["val/loss_start"] > 4  # a random model started far from the answers


def test_gpt2_with_the_plain_template_trains_and_is_scored(tmp_path, train_cfg):
    from loralab.train import train

    model = write_tiny_gpt2(tmp_path / "gpt2")
    cfg = train_cfg(
        *data_overrides(tmp_path, model, ROWS * 2),
        "adapter=full",
        "adapter.lr=1e-3",
        "trainer.max_epochs=1",
        "logger=[]",
        tiny=False,
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/exact_match"] <= 1.0 and metrics["test/loss"] > 0


@pytest.mark.parametrize("family", ["llama", "tiny_gpt"])
def test_the_head_scores_only_counted_positions_and_loss_and_gradients_are_unchanged(
    tiny_llama, family
):
    """The output head reads only the labelled rows: the same loss and the same gradients
    (tied head/embedding included) as scoring every position and ignoring the prompt's."""
    import torch.nn.functional as F

    from loralab.models.gpt import TinyGPT
    from loralab.tasks.language_modeling import IGNORE_INDEX, LanguageModelingTask, head_on_rows

    torch.manual_seed(0)
    if family == "llama":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(tiny_llama).float()
    else:
        model = TinyGPT(vocab_size=50, d_model=32, n_heads=2, n_layers=2, d_ff=64)
    vocab = model.get_output_embeddings().weight.shape[0] if family == "llama" else 50
    ids = torch.randint(0, vocab, (3, 9))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 5:8], labels[1, 2:4], labels[2, 8] = ids[0, 6:9], ids[1, 3:5], 7
    batch = {"input_ids": ids, "labels": labels}
    task = LanguageModelingTask(model, optimizer=torch.optim.SGD)

    head_rows = []
    head = model.get_output_embeddings() if family == "llama" else model.lm_head
    hook = head.register_forward_hook(lambda m, a, out: head_rows.append(out.shape))
    loss, n = task.token_loss(batch)
    hook.remove()
    assert head_rows == [torch.Size([6, vocab])] and n == 6
    loss.backward()
    fast = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    logits = task(batch)  # every position scored: the definition
    assert logits.shape == (3, 9, vocab)
    full = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    full.backward()
    assert torch.allclose(loss, full, atol=1e-6)
    for name, param in model.named_parameters():
        assert torch.allclose(fast[name], param.grad, atol=1e-6), name

    # every position counts (packed text): nothing to cut, the head sees the whole batch
    with head_on_rows(model, torch.ones_like(ids, dtype=torch.bool)):
        assert task(batch).shape == (3, 9, vocab)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)]
)
def test_evaluations_outside_the_steps_run_at_the_trainers_precision(tiny_llama, precision, dtype):
    """val/loss_start and the source's perplexity run outside Lightning's steps: they take the
    trainer's autocast, so a before and an after number are computed alike."""
    import lightning as L
    from transformers import AutoModelForCausalLM

    from loralab.callbacks.source_eval import evaluate
    from loralab.tasks.language_modeling import LanguageModelingTask

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).float()
    task = LanguageModelingTask(model, optimizer=torch.optim.SGD)
    task.trainer = L.Trainer(precision=precision, accelerator="cpu", logger=False)
    seen: list[torch.dtype] = []
    layer = model.get_output_embeddings()
    layer.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    ids = torch.randint(0, 32, (2, 6))
    loader = [{"input_ids": ids, "labels": ids}]
    assert task.mean_loss(loader) > 0 and evaluate(task, loader)[0] == "ppl"
    assert seen == [dtype, dtype]

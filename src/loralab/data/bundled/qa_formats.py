"""Real question sets as prompt/response pairs whose responses exact match can check.

Each function turns one upstream row into a `QAExample` (or None when the row has no answer
that exact match can judge): the prompt holds the passage, the question and, for multiple
choice, the lettered options, and ends with one line saying what to answer; the response is
that answer alone, in one fixed form, so the model's greedy text can equal it exactly.

* ASDiv: "9 apples" -> `9`. The number is kept, the unit word dropped; a decimal loses its
  trailing zeros (`9.80 dollars` -> `9.8`, `65.0` -> `65`), a fraction is written reduced
  (`5/2`, `-1/3`). An answer that is not one number (a name, a ratio `3:4`, a time `3:30
  p.m.`, several numbers `5; 15`, an ordinal `6th`) is dropped.
* QuaRTz, LogiQA: the options as `A. ...` lines; the response is the letter.
* NQ-open: the response is the first short answer; every listed answer is accepted.
* BoolQ: `yes` or `no`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

LETTERS = "ABCD"
CHOOSE = "Answer with the letter of the correct option only."
# one number (integer, decimal or fraction), then optionally a unit without digits or a list
NUMBER_ANSWER = re.compile(r"(?P<number>-?\d+(?:\.\d+)?(?:/\d+)?)(?:\s+(?P<unit>[^\d;:]+))?")
QUARTZ_USER = re.compile(r"(?P<stem>.*?)\n\n A: (?P<A>.*?)\n B: (?P<B>.*)", re.DOTALL)
LOGIQA_USER = re.compile(
    r"\s*Passage: (?P<passage>.*?)Question: (?P<question>.*?)"
    r"\nA\. A\.(?P<A>.*?)\nB\. B\.(?P<B>.*?)\nC\. C\.(?P<C>.*?)\nD\. D\.(?P<D>.*?)\nAnswer:\s*",
    re.DOTALL,
)


@dataclass(frozen=True)
class QAExample:
    """One question: what the model reads, the answer it trains on, every answer accepted."""

    prompt: str
    response: str
    answers: tuple[str, ...]

    def row(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": self.response, "answers": list(self.answers)}


def single(prompt: str, response: str) -> QAExample:
    return QAExample(prompt, response, (response,))


def normalise_number(answer: str) -> str | None:
    """`9 apples` -> `9`, `9.80 dollars` -> `9.8`, `10/4` -> `5/2`; None if not one number."""
    match = NUMBER_ANSWER.fullmatch(answer.strip())
    if match is None:
        return None
    number = match["number"]
    if "/" in number:
        numerator, denominator = number.split("/")
        if int(denominator) == 0:
            return None
        return str(Fraction(int(numerator), int(denominator)))  # 4/2 -> "2"
    text = format(Decimal(number).normalize(), "f")  # no exponent: 1E+2 -> "100"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _question(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith("?") else f"{text}?"


def asdiv_example(row: Mapping[str, Any]) -> QAExample | None:
    number = normalise_number(str(row["answer"]))
    if number is None:
        return None
    passage, question = " ".join(row["passage"].split()), " ".join(row["question"].split())
    return single(f"{passage} {question}\nAnswer with the number only.", number)


def choice_prompt(stem: str, options: Sequence[str]) -> str:
    """The stem, one `A. option` line per option, and the instruction to answer a letter."""
    letters = LETTERS[: len(options)]
    lines = [f"{ltr}. {' '.join(text.split())}" for ltr, text in zip(letters, options, strict=True)]
    return "\n".join([stem.strip(), *lines, CHOOSE])


def _chat_user(row: Mapping[str, Any]) -> str:
    return next(m["content"] for m in reversed(row["input"]) if m["role"] == "user")


def quartz_example(row: Mapping[str, Any]) -> QAExample | None:
    match = QUARTZ_USER.fullmatch(_chat_user(row))
    if match is None or row["ideal"] not in LETTERS[:2]:
        return None
    return single(choice_prompt(match["stem"], [match["A"], match["B"]]), row["ideal"])


def logiqa_example(row: Mapping[str, Any]) -> QAExample | None:
    match = LOGIQA_USER.fullmatch(_chat_user(row))
    if match is None or row["ideal"] not in LETTERS:
        return None
    stem = f"{match['passage'].strip()}\nQuestion: {match['question'].strip()}"
    return single(choice_prompt(stem, [match[letter] for letter in LETTERS]), row["ideal"])


def nq_open_example(row: Mapping[str, Any]) -> QAExample | None:
    answers = tuple(dict.fromkeys(" ".join(a.split()) for a in row["answer"] if a.strip()))
    if not answers:
        return None
    prompt = f"{_question(row['question'])}\nAnswer with a few words only."
    return QAExample(prompt, answers[0], answers)


def boolq_example(row: Mapping[str, Any]) -> QAExample | None:
    truth = str(row["answer"]).strip().lower()
    if truth not in ("true", "false"):
        return None
    passage = " ".join(row["passage"].split())
    prompt = f"{passage}\nQuestion: {_question(row['question'])}\nAnswer yes or no."
    return single(prompt, "yes" if truth == "true" else "no")

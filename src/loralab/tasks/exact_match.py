"""Evaluation by generation: does the model's greedy answer equal the expected one, exactly?

Perplexity says how likely the reference answers are; exact match says whether the model,
left to write on its own, writes them. Each prompt is answered greedily (batched, a fixed
`max_new_tokens`, cut at EOS or the chat template's end-of-turn), decoded without special
tokens, and compared with the expected answer after collapsing whitespace; nothing else
is forgiven ("2021-05-03." is wrong). An example may accept several answers (a tuple:
NQ-open lists each question's short answers): matching any one of them is exact. The score
is the fraction answered exactly, overall and per group (the bundled data's task families)
when the examples carry groups.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from loralab.models.generation import generate_many

log = logging.getLogger(__name__)


def normalise(text: str) -> str:
    """Whitespace collapsed and trimmed: a trailing newline is not a wrong answer."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Answered:
    prompt: str
    generated: str
    expected: str | tuple[str, ...]  # one answer, or every answer accepted

    @property
    def references(self) -> tuple[str, ...]:
        return (self.expected,) if isinstance(self.expected, str) else tuple(self.expected)

    @property
    def correct(self) -> bool:
        return normalise(self.generated) in {normalise(r) for r in self.references}


@dataclass
class GenerationScore:
    """Exact match over all examples and per group, and every answer."""

    exact_match: float
    by_group: dict[str, float] = field(default_factory=dict)
    answers: list[Answered] = field(default_factory=list)


def score_generation(
    model: nn.Module, examples: Any, max_new_tokens: int, batch_size: int
) -> GenerationScore:
    """Answer every prompt of a `GenerationSet` greedily and score the answers."""
    generated = generate_many(
        model, examples.prompt_ids, max_new_tokens, examples.stop_ids, examples.pad_id, batch_size
    )
    return score_answers(examples, generated)


def score_answers(examples: Any, generated: Sequence[Sequence[int]]) -> GenerationScore:
    """Score the generated ids of every example of a `GenerationSet`, in its order."""
    answers = [
        Answered(prompt, examples.decode(ids), expected)
        for prompt, ids, expected in zip(examples.prompts, generated, examples.answers, strict=True)
    ]
    by_group: dict[str, list[bool]] = defaultdict(list)
    for group, answer in zip(examples.groups or [], answers, strict=False):
        by_group[group].append(answer.correct)
    return GenerationScore(
        exact_match=sum(a.correct for a in answers) / max(len(answers), 1),
        by_group={g: sum(hits) / len(hits) for g, hits in sorted(by_group.items())},
        answers=answers,
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "\\n") or " "


def answers_markdown(answers: Sequence[Answered]) -> str:
    """A Markdown table of prompt / generated / expected, as TensorBoard's TEXT tab shows it."""
    lines = ["| prompt | generated | expected | exact |", "|---|---|---|---|"]
    for a in answers:
        mark = "yes" if a.correct else "no"
        expected = " / ".join(a.references)
        lines.append(f"| {_cell(a.prompt)} | {_cell(a.generated)} | {_cell(expected)} | {mark} |")
    return "\n".join(lines)


def log_answers(loggers: Sequence[Any], tag: str, answers: Sequence[Answered], step: int) -> None:
    """A few answers into the TEXT tab of every TensorBoard logger."""
    from lightning.pytorch.loggers import TensorBoardLogger

    if not answers:
        return
    text = answers_markdown(answers)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text(tag, text, global_step=step)

"""Instruction tuning data: prompt/response pairs (or message lists) with a prompt-masked loss.

Rows come from local CSV/JSONL/Parquet files or a Hugging Face dataset, as for text
classification: `data.prompt_field` and `data.response_field` name the columns, or
`data.messages_field` a column of `{"role", "content"}` lists ending with the assistant's
response. Each example is formatted by `ChatFormatter` (the tokenizer's chat template, or a
plain one) and becomes `input_ids` plus next-token `labels` in which every prompt position
is -100: the loss counts the response (and its end-of-turn token) only. Batches are padded
per batch to their longest row (padding: -100 labels, attention mask 0). Val and test are
read shortest first, so their batches pad little; `data.group_by_length=true` batches the
training examples by length too (`loralab.data.loaders.LengthGroupedSampler`), at a price:
examples alike in length are often alike in kind (the bundled families differ in length, so
its grouped batches hold 1.4 of the 4 families on average instead of 3.5).

Truncation at `data.max_seq_len` never removes a response silently: an example whose
response is cut is kept and counted as truncated, one whose prompt alone fills the length
is dropped and counted, and both counts are logged per split (`counts`).

Val and test also serve evaluation by generation: `generation_set(split)` gives their
formatted prompts and expected answers (the assistant's text) for exact match, grouped by
`data.group_field` when it is set (the bundled data's task family). A set with several
right answers per question (NQ-open) names their list in `data.accepted_field`: exact match
accepts any of them. `data.exact_match_chance` (what guessing scores) and
`data.exact_match_majority` (score always giving train's most common answer) are logged at
test beside the score (`exact_match_baselines`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from loralab.data.base import GenerationSet
from loralab.data.chat_format import ChatFormatter, conversation
from loralab.data.hf_text import HFTextDataModule
from loralab.data.text_checks import cells, check_columns, check_texts
from loralab.data.text_source import quiet_datasets
from loralab.errors import ConfigError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label of a position whose loss does not count (prompt, padding)
KEPT, TRUNCATED, DROPPED = "kept", "truncated", "dropped"


def masked_example(
    prompt_ids: Sequence[int], response_ids: Sequence[int], max_seq_len: int
) -> tuple[dict[str, list[int]] | None, str]:
    """Inputs and labels of one example cut to `max_seq_len` inputs, and what the cut did.

    Labels are next-token ids where the next token belongs to the response, else -100.
    """
    ids = [*prompt_ids, *response_ids][: max_seq_len + 1]
    kept = len(ids) - len(prompt_ids)  # response tokens left after the cut
    if kept <= 0:
        return None, DROPPED
    labels = [IGNORE_INDEX] * (len(prompt_ids) - 1) + ids[len(prompt_ids) :]
    status = TRUNCATED if kept < len(response_ids) else KEPT
    return {"input_ids": ids[:-1], "labels": labels}, status


def accepted_answers(row: Mapping[str, Any], field: str | None, response: str) -> str | tuple:
    """What exact match accepts: the row's list of answers in `field`, else the response."""
    accepted = row[field] if field else None
    if isinstance(accepted, str):
        return accepted
    return tuple(accepted) if accepted else response


class PadPerBatch:
    """Collate: right-pad a batch to its longest row (pad id, attention mask 0, label -100)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        shape = (len(rows), width)
        ids = torch.full(shape, self.pad_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class InstructDataModule(HFTextDataModule):
    """Prompt/response examples in the model's chat format, loss on the responses only.

    `source`: the `TextSource` keys (`train_file`, `val_file`, `test_file`, `dataset_name`,
    `dataset_config`, `split_names`, `val_fraction`, `test_fraction`, `n_train`, `n_val`,
    `n_test`, `cache_dir`), as flat `data.*` keys.
    """

    def __init__(
        self,
        tokenizer: str,
        prompt_field: str = "prompt",
        response_field: str = "response",
        messages_field: str | None = None,
        group_field: str | None = None,
        accepted_field: str | None = None,
        exact_match_chance: float | None = None,
        exact_match_majority: bool = False,
        system_prompt: str | None = None,
        chat_template: bool | None = None,
        max_seq_len: int = 256,
        batch_size: int = 8,
        group_by_length: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        vocab_size: int | None = None,
        write_files: Callable[[], Any] | None = None,
        **source: Any,
    ) -> None:
        super().__init__()
        self.read_source(source, ignore=["write_files"])
        if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 2:
            raise ConfigError(f"data.max_seq_len must be an integer >= 2, got {max_seq_len!r}.")
        self.write_files = write_files
        self.splits: dict[str, list[dict[str, list[int]]]] = {}
        self.generation: dict[str, GenerationSet] = {}
        # per split: examples read, kept whole, with the response cut, dropped
        self.counts: dict[str, dict[str, int]] = {}
        self._formatter: ChatFormatter | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def formatter(self) -> ChatFormatter:
        if self._formatter is None:
            self._formatter = ChatFormatter(self.tokenizer, self.hparams.chat_template)
        return self._formatter

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # built once; fit then test reuses the same splits
            return
        self.prepare_data()  # cheap when done; lets setup() alone work, as tests call it
        for name, ds in self._raw_splits().items():
            self._encode(name, ds)

    def _raw_splits(self) -> dict[str, Any]:
        """Train/val/test rows, checked for their columns and capped at n_train/n_val/n_test."""
        with quiet_datasets():
            splits = self.source.pick(self.source.load())
        check_columns(splits, self._fields())
        # a seeded subset of train; the first rows of val and test, whatever the seed
        seed = self.hparams.seed
        return {
            name: self.source.cap(name, ds, seed, shuffle=name == "train")
            for name, ds in splits.items()
        }

    def _fields(self) -> dict[str, str | None]:
        hp = self.hparams
        if hp.messages_field:
            fields = {"messages_field": hp.messages_field}
        else:
            fields = {"prompt_field": hp.prompt_field, "response_field": hp.response_field}
        return {**fields, "group_field": hp.group_field, "accepted_field": hp.accepted_field}

    def _encode(self, name: str, ds: Any) -> None:
        """Masked examples of one split, its generation set, and the truncation counts."""
        hp, fields = self.hparams, self._fields()
        for key in ("prompt_field", "response_field"):
            if key in fields:
                check_texts(name, key, cells(ds, fields[key]))
        rows, prompts, prompt_ids, answers, groups = [], [], [], [], []
        counts = {"examples": len(ds), KEPT: 0, TRUNCATED: 0, DROPPED: 0}
        for index, row in enumerate(ds):
            messages = conversation(row, name, index, fields, hp.system_prompt)
            prompt, response = self.formatter.encode(messages)
            example, status = masked_example(prompt, response, hp.max_seq_len)
            counts[status] += 1
            if example is None:
                continue
            rows.append(example)
            prompts.append(messages[-2]["content"] if len(messages) > 1 else "")
            prompt_ids.append(prompt)
            answers.append(accepted_answers(row, hp.accepted_field, messages[-1]["content"]))
            if hp.group_field:
                groups.append(str(row[hp.group_field]))
        if not rows:
            raise ConfigError(
                f"every example of the {name} split is longer than data.max_seq_len="
                f"{hp.max_seq_len} before its response begins; raise data.max_seq_len."
            )
        self.splits[name], self.counts[name] = rows, counts
        self.generation[name] = GenerationSet(
            prompts,
            prompt_ids,
            answers,
            self.formatter.stop_ids,
            self.tokenizer.pad_token_id,
            self._decode,
            groups or None,
        )
        log.info("instruct data, %s split: %s", name, counts)
        if counts[TRUNCATED] or counts[DROPPED]:
            log.warning(
                "instruct data, %s split: %d of %d examples had their response cut at "
                "data.max_seq_len=%d and %d were dropped (the prompt alone fills it); raise "
                "data.max_seq_len to keep them whole",
                name,
                counts[TRUNCATED],
                counts["examples"],
                hp.max_seq_len,
                counts[DROPPED],
            )

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def generation_set(self, split: str) -> GenerationSet | None:
        """Val/test prompts in the model's format and the answers exact match expects."""
        self.setup()
        return self.generation.get(split)

    def exact_match_baselines(self) -> dict[str, float]:
        """Test exact match of guessing: the declared chance, and train's most common answer."""
        hp, baselines = self.hparams, {}
        if hp.exact_match_chance is not None:
            baselines["chance"] = float(hp.exact_match_chance)
        if hp.exact_match_majority:
            self.setup()
            train, test = self.generation["train"].answers, self.generation["test"].answers
            majority = Counter(map(str, train)).most_common(1)[0][0]
            baselines["majority"] = sum(str(a) == majority for a in test) / len(test)
        return baselines

    def sample_prompt(self) -> str | None:
        self.setup()
        return self.generation["val"].prompts[0]

    @property
    def collate_fn(self) -> PadPerBatch:
        return PadPerBatch(self.tokenizer.pad_token_id)

    def example_lengths(self, split: str) -> list[int] | None:
        # val and test always (read shortest first: the same loss, less padding); train only
        # when asked, for grouped batches are alike in length and so, often, in kind
        if split == "train" and not self.hparams.group_by_length:
            return None
        return [len(row["input_ids"]) for row in self.splits[split]]

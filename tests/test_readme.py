"""The README and docs/*.md are true: their make targets exist, the `python -m loralab.<x>`
modules they name exist, the files and pages they point at exist, and every
`python -m loralab.train` command in a ```bash block runs."""

from __future__ import annotations

import importlib
import itertools
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tests.conftest import TINY, compose_config

from loralab.run.resolvers import project_root
from loralab.train import train

ROOT = Path(project_root())
README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
TRAIN = "python -m loralab.train"


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def code_lines(page: Path) -> list[str]:
    """Command lines inside a page's ```bash blocks (comments stripped)."""
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def split_top_level(value: str) -> list[str]:
    """Split a sweep value on commas outside brackets: 1,4,16 -> [1, 4, 16]; [a,b] stays."""
    parts, depth, current = [], 0, ""
    for char in value:
        depth += char in "[(" and 1 or (char in "])" and -1) or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def expand(args: list[str]) -> list[list[str]]:
    """The runs a command stands for: one, or the grid of a `-m` sweep."""
    if "-m" not in args and "--multirun" not in args:
        return [args]
    args = [a for a in args if a not in ("-m", "--multirun")]
    choices = []
    for arg in args:
        key, _, value = arg.partition("=")
        choices.append([f"{key}={v}" for v in split_top_level(value)] if value else [arg])
    return [list(combo) for combo in itertools.product(*choices)]


def runnable(args: list[str]) -> list[str]:
    """The overrides that shape a run; Hydra's own (sweeper, launcher, dirs) do not."""
    return [a for a in args if not a.startswith(("hydra.", "hydra/"))]


def train_commands() -> list[pytest.param]:
    """Every `python -m loralab.train` command of the pages, once (the first page showing it
    names it), each with the runs no earlier command trains: those a command shares with an
    earlier one (the same override list) are only composed, not trained again."""
    params, seen_commands, seen_runs = [], set(), set()
    for page in PAGES:
        for line in code_lines(page):
            if not line.startswith(TRAIN + " ") or line in seen_commands:
                continue
            seen_commands.add(line)
            args = shlex.split(line[len(TRAIN) :])
            runs = expand(runnable(args))
            fresh = [tuple(run) not in seen_runs for run in runs]
            seen_runs.update(tuple(run) for run in runs)
            params.append(pytest.param(runs, fresh, id=f"{page_id(page)}: {' '.join(args)}"))
    return params


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_make_targets_exist(page):
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE.read_text(), flags=re.M))
    used = {line.split()[1] for line in code_lines(page) if line.startswith("make ")}
    used |= set(re.findall(r"`make ([a-z-]+)", page.read_text()))
    assert used <= targets, used - targets
    if page == README:
        assert used


def test_readme_shows_the_two_setup_commands():
    lines = code_lines(README)
    assert lines[:2] == ["make train", "make test"]


def entry_point_exists(module: str) -> bool:
    """`python -m loralab.x.y` works if src/loralab/x/y.py or src/loralab/x/y/__main__.py exists."""
    path = ROOT / "src" / Path(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_m_modules_exist(page):
    """Every `python -m loralab.<x>` a page shows, in any block or in the text, is a module
    that `python -m` can run, including the commands this test does not run (eval, merge, ...);
    `python -m loralab.<name>` is a placeholder."""
    modules = set(re.findall(r"python -m (loralab(?:\.\w+)*)(?!\.<)", page.read_text()))
    missing = sorted(m for m in modules if not entry_point_exists(m))
    assert not missing, missing


def anchors(page: Path) -> set[str]:
    """The #anchors of a page's headings, as GitHub makes them."""
    headings = re.findall(
        r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), flags=re.M
    )
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_files_and_linked_pages_exist(page):
    """Repository paths in backticks (`src/...`, `configs/...`, ...), relative links and the
    headings their #anchors point at."""
    text = page.read_text()
    named = re.findall(r"`((?:src|configs|scripts|tests|docs)/[^`\s]*)`", text)
    missing = [p for p in named if "<" not in p and not (ROOT / p.rstrip("/")).exists()]
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", text):
        if "://" in target:
            continue
        linked = page.parent / target if target else page
        if not linked.exists():
            missing.append(target)
        elif anchor and anchor not in anchors(linked):
            missing.append(f"{target}#{anchor}")
    assert not missing, missing


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_examples_import_what_exists(page):
    """`from loralab... import a, b` in a page's ```python blocks names real objects."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    for module, names in re.findall(
        r"^from (loralab[\w.]*) import ([\w, ]+)$", "\n".join(blocks), flags=re.M
    ):
        imported = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(imported, name), f"{module}.{name}"


def shortened(run: list[str], output_dir: Path, pretrained: Path) -> list[str]:
    """TINY settings that apply to the run's config, and the test's pretrained tiny encoder.

    A setting applies when its key exists in the run's config, also with a null value
    (text data's `n_train: null` means "all rows": the test caps it all the same)."""
    cfg = compose_config("train", run, output_dir)
    absent = object()
    extra = [
        o for o in TINY if OmegaConf.select(cfg, o.partition("=")[0], default=absent) is not absent
    ]
    uses_tiny_encoder = str(OmegaConf.select(cfg, "model.net._target_", default="")).endswith(
        "TransformerEncoderClassifier"
    )
    if uses_tiny_encoder and not any(a.startswith("model.checkpoint=") for a in run):
        extra.append(f"model.checkpoint={pretrained}")
    return [*extra, "logger=[]"]


@pytest.mark.parametrize(("runs", "fresh"), train_commands())
def test_train_command_runs(runs, fresh, tmp_path, pretrained_backbone):
    """Each command, with tiny data and a short budget, completes every run it names; a run
    an earlier command already trained is composed only."""
    for i, (run, new) in enumerate(zip(runs, fresh, strict=True)):
        out = tmp_path / f"run{i}"
        cfg = compose_config("train", [*shortened(run, out, pretrained_backbone), *run], out)
        if new:
            assert train(cfg), run

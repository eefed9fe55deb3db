"""The README is true: its make targets exist and its `python -m loralab.train` commands run."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tests.conftest import TINY, compose_config

from loralab.run.resolvers import project_root
from loralab.train import train

README = Path(project_root()) / "README.md"
MAKEFILE = Path(project_root()) / "Makefile"


def code_lines() -> list[str]:
    """Command lines inside the README's ```bash blocks (comments stripped)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
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


def train_commands() -> list[list[str]]:
    prefix = "python -m loralab.train"
    return [shlex.split(line[len(prefix) :]) for line in code_lines() if line.startswith(prefix)]


def test_readme_make_targets_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE.read_text(), flags=re.M))
    used = {line.split()[1] for line in code_lines() if line.startswith("make ")}
    used |= set(re.findall(r"`make ([a-z-]+)", README.read_text()))
    assert used and used <= targets, used - targets


def test_readme_shows_the_two_setup_commands():
    lines = code_lines()
    assert lines[:2] == ["make train", "make test"]


def shortened(run: list[str], output_dir: Path, pretrained: Path) -> list[str]:
    """TINY settings that apply to the run's config, and the test's pretrained tiny encoder."""
    cfg = compose_config("train", run, output_dir)
    keys = {o.partition("=")[0] for o in TINY}
    present = {k for k in keys if OmegaConf.select(cfg, k, default=None) is not None}
    extra = [o for o in TINY if o.partition("=")[0] in present]
    uses_tiny_encoder = str(OmegaConf.select(cfg, "model.net._target_", default="")).endswith(
        "TransformerEncoderClassifier"
    )
    if uses_tiny_encoder and not any(a.startswith("model.checkpoint=") for a in run):
        extra.append(f"model.checkpoint={pretrained}")
    return [*extra, "logger=[]"]


@pytest.mark.parametrize("args", train_commands(), ids=" ".join)
def test_readme_train_command_runs(args, tmp_path, pretrained_backbone):
    """Each README command, with tiny data and a short budget, completes every run it names."""
    runnable = [a for a in args if not a.startswith(("hydra.", "hydra/"))]
    for i, run in enumerate(expand(runnable)):
        out = tmp_path / f"run{i}"
        cfg = compose_config("train", [*shortened(run, out, pretrained_backbone), *run], out)
        metrics = train(cfg)
        assert metrics, run

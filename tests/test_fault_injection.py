"""Fault injection: every bad input of docs/reliability.md, driven through the real CLI.

Each case runs `python -m loralab.<entry> ...` as a user would (each its own process, forked
from one interpreter that imported loralab once: `tests/fork_cli.py`) and must end with exit
code 1, exactly one `error:` line that names the key at fault and matches the message the page
documents (the page's table is the expected output: a `<...>` there stands for a path or
number that varies), no traceback, and every file that existed before byte-identical after.
The cases run two at a time, all started from one prepared set of inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from tests.conftest import TINY, compose_config, run_cli_many

from loralab.keys import BASE_KEY, CONFIG_KEY
from loralab.models import TransformerEncoderClassifier, save_backbone
from loralab.run.resolvers import project_root
from loralab.train import train

pytestmark = pytest.mark.slow

ROOT = Path(project_root())
PAGE = ROOT / "docs" / "reliability.md"
QUICK = [
    "debug=limit",
    "logger=[]",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]
# the file a pickle payload would create if anything ever unpickled it
PWNED = "pwned"


class Payload:
    """A pickled object whose loading creates a file: what a crafted checkpoint would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return (open, (self.path, "w"))


@dataclass
class Case:
    """One bad input: the command (paths as {name} of the prepared inputs) and its key."""

    id: str
    module: str
    args: list[str]
    key: str
    # extra lines of the same sentence that must appear in it (beyond the page's pattern)
    says: list[str] = field(default_factory=list)
    needs_no_gpu: bool = False


TRAIN, EVAL, MERGE, GENERATE = "loralab.train", "loralab.eval", "loralab.merge", "loralab.generate"
EXPORT = "loralab.export"
BASE = "model.checkpoint={base}"
CHAR = ["data=char_text", "model=tiny_gpt", "task=language_modeling", "adapter.trainable=[]"]
CSV = [
    "data=text_csv",
    "data.val_file=null",
    "data.test_file=null",
    "data.write_files=null",
    "data.label_names=null",
    "model.checkpoint=null",
]

CASES = [
    # a pickle payload never runs: eval, merge, generate and the training resume refuse it
    Case("eval-pickle-payload", EVAL, ["ckpt_path={payload}"], "ckpt_path"),
    Case("merge-pickle-payload", MERGE, ["ckpt_path={payload}", "output={out}/m.safetensors"],
         "ckpt_path"),
    Case("generate-pickle-payload", GENERATE, ["ckpt_path={payload}"], "ckpt_path"),
    Case("export-pickle-payload", EXPORT, ["ckpt_path={payload}", "output={out}/peft"],
         "ckpt_path"),
    Case("resume-pickle-payload", TRAIN, [*QUICK, BASE, "ckpt_path=last",
         "hydra.run.dir={killed_payload}"], "ckpt_path"),
    # corrupt, truncated or foreign files
    Case("eval-truncated", EVAL, ["ckpt_path={truncated}"], "ckpt_path"),
    Case("eval-not-a-checkpoint", EVAL, ["ckpt_path={text_ckpt}"], "ckpt_path"),
    Case("merge-truncated", MERGE, ["ckpt_path={truncated}", "output={out}/m.safetensors"],
         "ckpt_path"),
    Case("export-truncated", EXPORT, ["ckpt_path={truncated}", "output={out}/peft"],
         "ckpt_path"),
    Case("generate-corrupt-backbone", GENERATE, ["ckpt_path={garbage_backbone}"], "ckpt_path"),
    Case("resume-truncated", TRAIN, [*QUICK, BASE, "ckpt_path=last",
         "hydra.run.dir={killed_truncated}"], "ckpt_path"),
    # the base under an adapter
    Case("eval-other-base", EVAL, ["ckpt_path={rebased}"], "allow_other_base=true"),
    Case("pretrain-overwrite", TRAIN, ["experiment=pretrain", "save_backbone={existing}",
         "logger=[]"], "save_backbone", says=["overwrite=true"]),
    Case("missing-own-backbone", TRAIN, [*QUICK, "model.checkpoint={missing_backbone}"],
         "model.checkpoint"),
    # no lost results
    Case("used-run-folder", TRAIN, [*QUICK, BASE, "hydra.run.dir={used_run}"], "hydra.run.dir",
         says=["ckpt_path=last", "a new folder"]),
    Case("resume-other-config", TRAIN, [*TINY, *QUICK, BASE, "adapter.rank=4", "ckpt_path=last",
         "hydra.run.dir={resumed_run}"], "adapter.rank"),
    Case("sweep-all-failed", TRAIN, ["-m", "experiment=charlm_lora_vs_full", "seed=1",
         "paths.checkpoint_dir={no_base}/checkpoints", *QUICK, "hydra.sweep.dir={out}/sweep"],
         "hydra.sweep.dir", says=["every run of this sweep failed"]),
    # bad values and keys
    Case("error-inside-instantiate", TRAIN, [*QUICK, BASE, "data.rule=nope"], "data.rule"),
    Case("rank-above-layer", TRAIN, [*QUICK, BASE, "adapter.rank=100000"], "adapter.rank",
         says=["layers.0.attn.q_proj", "at most 128"]),
    Case("unknown-adapter-key", TRAIN, [*QUICK, BASE, "+adapter.rnak=4"], "adapter.rnak",
         says=["adapter.rank"]),
    Case("unknown-model-key", TRAIN, [*QUICK, BASE, "+model.net.d_modle=64"],
         "model.net.d_modle"),
    Case("negative-lr", TRAIN, [*QUICK, BASE, "adapter.lr=-1"], "adapter.lr"),
    Case("gpu-without-gpu", TRAIN, [*QUICK, BASE, "trainer=gpu"], "trainer.accelerator",
         says=["trainer=cpu"], needs_no_gpu=True),
    Case("ddp-on-cpu", TRAIN, [*QUICK, BASE, "trainer=ddp"], "trainer.accelerator",
         says=["trainer=ddp_sim"], needs_no_gpu=True),
    # data
    Case("char-text-binary", TRAIN, [*QUICK, *CHAR, "data.path={binary}"], "data.path"),
    Case("csv-row-without-text", TRAIN, [*QUICK, *CSV, "data.train_file={rows_csv}",
         "data.n_train=20"], "data.text_field", says=["row 40 of data.train_file="]),
    Case("csv-not-utf8", TRAIN, [*QUICK, *CSV, "data.train_file={latin1_csv}"],
         "data.train_file"),
]  # fmt: skip


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path, skip: Path) -> dict[Path, str]:
    """Every file under `root` (outside `skip`) with its content hash."""
    return {p: sha256_of(p) for p in root.rglob("*") if p.is_file() and skip not in p.parents}


def tiny_encoder_file(path: Path, seed: int) -> Path:
    """A backbone file of the default tiny encoder's shape, randomly initialised: a base to
    train on and to mistake for another (no pretraining needed)."""
    net = compose_config("train", [], path.parent / "compose").model.net
    torch.manual_seed(seed)
    settings = {key: value for key, value in net.items() if not key.startswith("_")}
    save_backbone(TransformerEncoderClassifier(**settings), path)
    return path


def prepare_inputs(root: Path) -> dict[str, Path]:
    """The bad (and good) files the cases point at."""
    paths = {"out": root / "runs", "base": tiny_encoder_file(root / "base.safetensors", seed=0)}
    done = root / "done"
    train(compose_config("train", [*TINY, *QUICK, f"model.checkpoint={paths['base']}"], done))
    best = done / "checkpoints" / "best.ckpt"

    paths["payload"] = root / "payload.ckpt"
    torch.save({"state_dict": {}, "hook": Payload(root / PWNED)}, paths["payload"])
    paths["truncated"] = root / "truncated.ckpt"
    paths["truncated"].write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    paths["text_ckpt"] = root / "notes.ckpt"
    paths["text_ckpt"].write_text("these are my notes, not a checkpoint\n")
    paths["garbage_backbone"] = root / "garbage.safetensors"
    paths["garbage_backbone"].write_bytes(os.urandom(4096))
    paths["missing_backbone"] = root / "my_base.safetensors"

    # the run's checkpoint, its base path now holding other weights (a re-pretrained base)
    other = tiny_encoder_file(root / "other_base.safetensors", seed=7)
    checkpoint = torch.load(best, weights_only=True)
    checkpoint[CONFIG_KEY]["model"]["checkpoint"] = str(other)
    paths["rebased"] = root / "rebased.ckpt"
    torch.save(checkpoint, paths["rebased"])

    for name, content in (
        ("killed_payload", paths["payload"]),
        ("killed_truncated", paths["truncated"]),
    ):
        (root / name / "checkpoints").mkdir(parents=True)
        shutil.copy(content, root / name / "checkpoints" / "last.ckpt")
        paths[name] = root / name
    for name in ("used_run", "resumed_run"):
        paths[name] = root / name
        shutil.copytree(done, paths[name])
    paths["existing"] = root / "existing.safetensors"
    shutil.copy(paths["base"], paths["existing"])
    paths["no_base"] = root / "no_base"
    (paths["no_base"] / "checkpoints").mkdir(parents=True)

    paths["binary"] = root / "model.bin"  # what a compiled program starts with: valid UTF-8
    paths["binary"].write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00" * 200)
    rows = [f"review number {i},{i % 2}" for i in range(60)]
    rows[39] = ",1"  # the 40th data row has no text
    paths["rows_csv"] = root / "reviews.csv"
    paths["rows_csv"].write_text("text,label\n" + "\n".join(rows) + "\n")
    paths["latin1_csv"] = root / "latin1.csv"
    paths["latin1_csv"].write_bytes(b"text,label\n" + "très bien,1\n".encode("latin-1") * 50)
    return paths


def command(case: Case, paths: dict[str, Path]) -> list[str]:
    args = [arg.format(**{k: str(v) for k, v in paths.items()}) for arg in case.args]
    if not any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args):
        args.append(f"hydra.run.dir={paths['out'] / case.id}")
    return [sys.executable, "-m", case.module, *args]


def run_all(cases: list[Case], paths: dict[str, Path]) -> dict[str, subprocess.CompletedProcess]:
    """Every case as its own process (forked from one interpreter that imported loralab once)."""
    commands = {c.id: (c.module, command(c, paths)[3:]) for c in cases}
    return run_cli_many(commands, paths["out"].parent / "cli")


@dataclass
class Outcomes:
    paths: dict[str, Path]
    before: dict[Path, str]
    after: dict[Path, str]
    results: dict[str, subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> Outcomes:
    """Every case run once, a few at a time, over one prepared set of inputs."""
    root = tmp_path_factory.mktemp("faults")
    paths = prepare_inputs(root)
    before = snapshot(root, paths["out"])
    cases = [c for c in CASES if not (c.needs_no_gpu and torch.cuda.is_available())]
    results = run_all(cases, paths)
    return Outcomes(paths, before, snapshot(root, paths["out"]), results)


def documented_messages() -> dict[str, str]:
    """Case id -> the message the page's table gives for it."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|.*\| (.+) \|$", PAGE.read_text(), flags=re.M)
    return {case_id: message.replace("\\|", "|") for case_id, message in rows}


def as_pattern(message: str) -> re.Pattern:
    """The documented message as a regex: `<...>` placeholders stand for anything."""
    parts = re.split(r"<[^<>]*>", message)
    return re.compile(".+?".join(re.escape(p) for p in parts))


def test_the_page_documents_exactly_these_cases():
    assert sorted(documented_messages()) == sorted(c.id for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_bad_input_fails_in_one_documented_sentence(case, outcomes):
    if case.id not in outcomes.results:
        pytest.skip("this machine has a GPU")
    proc = outcomes.results[case.id]
    output = proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, output[-3000:]
    assert len(errors) == 1 and not proc.stdout.count("error:"), output[-3000:]
    assert "Traceback" not in output and "Error executing job" not in output, output[-3000:]
    message = errors[0].removeprefix("error: ")
    assert case.key in message
    assert all(part in message for part in case.says), message
    assert as_pattern(documented_messages()[case.id]).fullmatch(message), (
        f"docs/reliability.md's message for {case.id} no longer matches the live one:\n{message}"
    )


def test_no_file_that_existed_before_changed_and_no_payload_ran(outcomes):
    assert outcomes.results, "no case ran"
    changed = [p for p, digest in outcomes.before.items() if outcomes.after.get(p) != digest]
    assert not changed, changed
    assert not (outcomes.paths["out"].parent / PWNED).exists()  # the payload never ran


def test_refused_runs_leave_their_run_folders_exactly_as_they_were(outcomes):
    """Hydra writes .hydra/ and the log into a run folder; a refused run must not get there."""
    for name in ("used_run", "resumed_run", "killed_payload", "killed_truncated"):
        folder = outcomes.paths[name]
        now = {p for p in folder.rglob("*") if p.is_file()}
        assert now == {p for p in outcomes.before if folder in p.parents}, name


def test_the_reports_rank_analysis_never_unpickles_a_checkpoint(tmp_path):
    """A sweep folder whose full fine-tuning run points at a payload: the report skips it."""
    from tests.conftest import run_cli

    run_dir = tmp_path / "sweep" / "0"
    run_dir.mkdir(parents=True)
    payload = tmp_path / "best.ckpt"
    torch.save({"state_dict": {}, "hook": Payload(tmp_path / PWNED)}, payload)
    summary = {"status": "completed", "adapter": "full", "run_name": "full",
               "checkpoint_path": str(payload),
               "base_checkpoint": str(tiny_encoder_file(tmp_path / "base.safetensors", seed=0)),
               "metrics": {"val/acc": 0.5}}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))
    proc = run_cli("loralab.report", str(tmp_path / "sweep"), check=False)
    assert not (tmp_path / PWNED).exists(), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_another_base_loads_only_when_allowed_and_a_random_base_is_rebuilt_alike(
    outcomes, tmp_path
):
    from loralab.errors import AdapterConfigError
    from loralab.run.builder import load_run

    with pytest.raises(AdapterConfigError, match="allow_other_base=true"):
        load_run(outcomes.paths["rebased"])
    assert load_run(outcomes.paths["rebased"], allow_other_base=True).base is not None

    # a LoRA run on a random base (model.checkpoint=null): rebuilt under its seed, it is the same
    cfg = compose_config("train", [*TINY, *QUICK, "model.checkpoint=null", "seed=3"], tmp_path)
    train(cfg)
    best = tmp_path / "checkpoints" / "best.ckpt"
    recorded = torch.load(best, weights_only=True)[BASE_KEY]
    assert load_run(best).base.to_dict() == recorded

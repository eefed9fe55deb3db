"""The command line as a researcher uses it: real processes, real exit codes, real folders."""

from __future__ import annotations

import json

import pytest
from tests.conftest import compose_config, run_cli, run_cli_many

pytestmark = pytest.mark.slow

QUICK = ["debug=limit", "trainer.enable_progress_bar=false", "callbacks.progress_bar=null"]


def test_multirun_over_two_ranks(tmp_path, pretrained_backbone):
    sweep = tmp_path / "sweep"
    run_cli(
        "loralab.train",
        "-m",
        "adapter.rank=1,4",
        f"model.checkpoint={pretrained_backbone}",
        f"hydra.sweep.dir={sweep}",
        *QUICK,
    )
    summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]
    assert [s["rank"] for s in summaries] == [1, 4]
    assert [s["run_name"] for s in summaries] == ["lora_r1_a16_qv", "lora_r4_a16_qv"]
    net = compose_config("train", [], tmp_path).model.net
    head = net.d_model * 2 + 2
    for s in summaries:
        assert s["status"] == "completed"
        assert s["trainable_params"] == net.n_layers * 2 * s["rank"] * 2 * net.d_model + head


BAD_VALUES = {
    "adapter.rank=0": "adapter.rank",
    "adapter.alpha=-1": "adapter.alpha",
    "adapter.targets=[nope]": "adapter.targets",
    # raised inside hydra.utils.instantiate, which wraps it: still one sentence (data.rule
    # is a case of tests/test_fault_injection.py)
    "model.net.n_heads=3": "model.n_heads",
}


@pytest.fixture(scope="module")
def bad_value_runs(tmp_path_factory, pretrained_backbone) -> dict:
    """Each bad value's `python -m loralab.train` (all forked from one interpreter)."""
    root = tmp_path_factory.mktemp("bad_values")
    commands = {
        override: ("loralab.train", [override, f"model.checkpoint={pretrained_backbone}",
                                     f"hydra.run.dir={root / str(i)}", *QUICK])
        for i, override in enumerate(BAD_VALUES)
    }  # fmt: skip
    procs = run_cli_many(commands, root / "cli")
    return {o: (procs[o], root / str(i)) for i, o in enumerate(BAD_VALUES)}


@pytest.mark.parametrize(("override", "key"), BAD_VALUES.items())
def test_bad_adapter_values_fail_in_one_sentence(bad_value_runs, override, key):
    proc, run = bad_value_runs[override]
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and key in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"


def test_missing_pretrained_backbone_says_make_pretrain(tmp_path):
    proc = run_cli(
        "loralab.train",
        f"model.checkpoint={tmp_path / 'checkpoints' / 'tiny_encoder.safetensors'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *QUICK,
        check=False,
    )
    assert proc.returncode == 1
    assert "make pretrain" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_config_option_fails_without_writing_logs(tmp_path):
    proc = run_cli("loralab.train", "adapter=nope", f"paths.log_dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "adapter" in proc.stderr and "nope" in proc.stderr
    assert not any(tmp_path.iterdir())

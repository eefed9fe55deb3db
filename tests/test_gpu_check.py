"""scripts/gpu_check.sh --cpu: the GPU check's reduced form runs, so the GPU command can't rot."""

from __future__ import annotations

import json
import subprocess

import pytest

from loralab.run.resolvers import project_root

pytest.importorskip("peft")


@pytest.mark.slow
def test_gpu_check_cpu_writes_the_json_and_the_table(tmp_path):
    root = project_root()
    done = subprocess.run(
        [f"{root}/scripts/gpu_check.sh", "--cpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"device", "dtype", "batch", "seq_len", "commit", "rows", "peft", "llm_run"} <= set(
        result
    )
    rows = {(r["method"], r["gradient_checkpointing"]): r for r in result["rows"]}
    assert set(rows) == {(m, c) for m in ("lora", "full", "qlora") for c in (False, True)}
    for row in rows.values():
        assert row["tokens_per_s"] > 0 and row["planner_bytes"] > 0
        assert row["peak_memory_bytes"] is None  # on CPU: no GPU peak to report
    # LoRA keeps less train state than full fine-tuning, QLoRA's 4-bit base less again
    full, lora, qlora = (rows[(m, False)]["train_state_bytes"] for m in ("full", "lora", "qlora"))
    assert qlora < lora < full
    assert result["peft"]["loralab_step_ms"] > 0 and result["peft"]["peft_step_ms"] > 0
    assert result["llm_run"]["steps"] > 0 and 0 <= result["llm_run"]["test/exact_match"] <= 1
    table = (tmp_path / "gpu_check.md").read_text()
    assert (
        "| method | grad. ckpt | tokens/s | peak GPU MiB | train state MiB | planner MiB |" in table
    )
    assert table.count("\n| qlora |") == 2 and "loralab vs PEFT" in table

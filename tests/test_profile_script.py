"""scripts/profile_llm.py prints, for a train step and an evaluation, the top operators with
self times and shares of the phase (on a 2-layer Llama of SmolLM2's layout here)."""

from __future__ import annotations

import re
import subprocess
import sys

from loralab.run.resolvers import project_root


def test_the_profile_lists_the_top_operators_of_a_step_and_an_evaluation():
    script = f"{project_root()}/scripts/profile_llm.py"
    out = subprocess.run(
        [sys.executable, script, "--tiny", "--adapter", "qlora", "--top", "4", "--bf16",
         "--answer-tokens", "8"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    assert "bf16 autocast, loss on the last 8 positions" in out.splitlines()[0]
    phases = re.split(r"\n(?=train step|evaluation)", out)[1:]
    assert [p.split(":")[0] for p in phases] == [
        "train step (4 x 64)",
        "evaluation (8 x 32 + 16 new)",
    ]
    for phase in phases:
        rows = re.findall(r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)%$", phase, flags=re.M)
        assert len(rows) == 4
        shares = [float(share) for _, _, share in rows]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.0

"""Run names that say what a run is: `full`, `lora_r8_a16_qv`, `qlora-nf4_r8_a16_qv`.

The method part comes from the variant registry (each variant declares its tag), the target
part from the projection table (`query` and `q_proj` are both `q`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from loralab.lora.variants import method_name
from loralab.models.projections import canonical_projection

ALL_LINEAR_TAG = "all"


def short_target(pattern: str) -> str:
    """q_proj -> q, layers.0.attn.v_proj -> v, query -> q, all-linear -> all, c_attn -> cattn."""
    if pattern == "all-linear":
        return ALL_LINEAR_TAG
    projection = canonical_projection(pattern.removeprefix("re:"))
    if projection in ("q", "k", "v", "o"):
        return projection
    last = re.split(r"[.:]", pattern)[-1]
    return re.sub(r"[^A-Za-z0-9]", "", re.sub(r"_?proj$", "", last)) or "x"


def run_name(adapter: Mapping[str, Any]) -> str:
    """The method, then rank, alpha and targets for an adapter run (`full` has none)."""
    name = method_name(adapter)
    if "rank" not in adapter:
        return name
    targets = adapter.get("targets") or []
    targets = [targets] if isinstance(targets, str) else list(targets)
    parts = [short_target(str(t)) for t in targets]
    letters = "".join(p for p in parts if len(p) == 1)
    words = [p for p in parts if len(p) > 1]
    target_tag = "-".join(([letters] if letters else []) + words)
    alpha = adapter.get("alpha")
    alpha_tag = f"{alpha:g}" if isinstance(alpha, int | float) else str(alpha)
    return f"{name}_r{adapter.get('rank')}_a{alpha_tag}_{target_tag}"

"""The run summary: one `summary.json` per run folder, written by training, read by the report.

`RunSummary` is the schema. Training fills it (`loralab.train`), a failed run leaves one with
`status: failed` (`loralab.run.cli`), and the sweep report reads it back
(`loralab.report.collect`); every field is spelled once, here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.io import read_json, write_json

# the files of a run folder that other stages read
SUMMARY_FILE = "summary.json"
ADAPTER_FILE = "adapter.safetensors"
COMPLETED, FAILED = "completed", "failed"


@dataclass
class RunSummary:
    """What one run was and what it measured; None where a run did not measure it."""

    status: str = FAILED
    run_name: str | None = None
    # the adapter: its method (full, lora, dora, ...), rank, alpha, targets and learning rate
    adapter: str | None = None
    rank: int | None = None
    alpha: float | None = None
    targets: list[str] | None = None
    lr: float | None = None
    seed: int | None = None
    # what trains and what it costs
    trainable_params: int | None = None
    total_params: int | None = None
    trainable_percent: float | None = None
    base_weight_bytes: int | None = None  # the model's own weights as stored (quantized or not)
    base_weight_bytes_fp32: int | None = None
    frozen_linear_bytes: int | None = None  # the frozen linear weights alone: what QLoRA shrinks
    frozen_linear_bytes_fp32: int | None = None
    # final metrics (val/acc, test/acc, test/ppl, ...) and the step budget actually used
    metrics: dict[str, float] = field(default_factory=dict)
    global_step: int | None = None
    # measured while training (callbacks.ResourceMonitor)
    step_time_ms: float | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    peak_memory_mib: float | None = None
    train_state_mib: float | None = None
    wall_time_s: float | None = None
    # files the run wrote, and the base it started from
    checkpoint_path: str | None = None
    checkpoint_bytes: int | None = None
    adapter_bytes: int | None = None
    backbone_bytes: int | None = None
    base_checkpoint: str | None = None
    # a failed run: what went wrong
    error: str | None = None
    traceback: str | None = None
    # examples in the target's test split (sequences; windows for a language model): with the
    # test accuracy, it gives the binomial interval of one run
    test_size: int | None = None
    # the base's source task the run was also evaluated on (source/* metrics), in words
    source: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    @classmethod
    def failed(cls, adapter: Mapping[str, Any], **fields: Any) -> RunSummary:
        return cls(status=FAILED, **adapter_fields(adapter), **fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """A summary from its JSON; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / SUMMARY_FILE, self.to_dict())

    @classmethod
    def read(cls, run_dir: str | Path) -> RunSummary:
        return cls.from_dict(read_json(Path(run_dir) / SUMMARY_FILE))


def adapter_fields(adapter: Mapping[str, Any]) -> dict[str, Any]:
    """The adapter settings a comparison table needs; full fine-tuning has no rank."""
    targets = adapter.get("targets")
    return {
        "adapter": adapter.get("name"),
        "rank": adapter.get("rank"),
        "alpha": adapter.get("alpha"),
        "targets": [targets] if isinstance(targets, str) else list(targets or []) or None,
        "lr": adapter.get("lr"),
    }

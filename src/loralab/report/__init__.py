"""The comparison report of a sweep: `python -m loralab.report [SWEEP_DIR]`.

collect (summaries + event files) -> quality metric -> rank analysis -> figures + findings
-> SWEEP_DIR/report.md with the PNGs beside it.
"""

from loralab.report.build import build_report
from loralab.report.collect import SweepRun, collect_runs, newest_sweep

__all__ = ["SweepRun", "build_report", "collect_runs", "newest_sweep"]

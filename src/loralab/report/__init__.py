"""The comparison report of a sweep: `python -m loralab.report [SWEEP_DIR]`.

collect -> analyse -> render -> build:
- collect (`collect.py`): every run folder's summary and event-file curves, as `SweepRun`s;
- analyse (`sweep.py` over `quality`, `points`, `rates`, `compare`, `forgetting`, `speed` with
  the `probe`, `ranks`, `stats`): dataclasses of numbers, not a word of text;
- render: `format.py` writes numbers, `tables.py` the Markdown tables (and runs.csv),
  `prose.py` every sentence, `figures.py` the PNGs;
- build (`build.py`): the sections of SWEEP_DIR/report.md, in order.
"""

from loralab.report.build import build_report
from loralab.report.collect import SweepRun, collect_runs, newest_sweep

__all__ = ["SweepRun", "build_report", "collect_runs", "newest_sweep"]

"""docs/extending.md's report figure, as the page shows it: one function in figures.py and
one line in build.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.test_extending_dataset import block
from tests.test_report import seeded_sweep

from loralab.report import build, figures
from loralab.report.collect import collect_runs
from loralab.report.sweep import analyse_sweep

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_the_pages_figure_draws_from_the_points_of_a_sweep(tmp_path, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    seeded_sweep(sweep_dir, [0.90, 0.91, 0.92], {"lora_r4": [0.88, 0.89, 0.90]})
    for i, path in enumerate(sorted(sweep_dir.glob("*/summary.json"))):
        path.write_text(json.dumps({**json.loads(path.read_text()), "wall_time_s": 60.0 + i}))
    namespace = vars(figures).copy()  # the names the page's code uses are figures.py's
    exec(block("python", "def wall_time"), namespace)
    sweep = analyse_sweep(sweep_dir, collect_runs(sweep_dir), "never")
    png = namespace["wall_time"](sweep.points, tmp_path / "wall_time.png")
    assert png == tmp_path / "wall_time.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert namespace["wall_time"](sweep.points[:0], tmp_path / "none.png") is None

    line = block("python", '_image("wall time"')
    module = re.search(r"(\w+)\.wall_time\(", line).group(1)
    assert getattr(build, module) is figures  # build.py reaches the figure through that name
    assert "def _figure_sections" in Path(build.__file__).read_text()

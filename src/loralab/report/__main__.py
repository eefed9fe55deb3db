"""`python -m loralab.report [SWEEP_DIR]`: write SWEEP_DIR/report.md (default: the newest sweep)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from loralab.report.build import build_report
from loralab.report.collect import newest_sweep
from loralab.run.resolvers import project_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loralab.report",
        description="Compare the runs of a sweep: table, curves, cost and rank analysis.",
    )
    parser.add_argument(
        "sweep_dir",
        nargs="?",
        type=Path,
        help="a sweep folder (logs/<task>/multiruns/<time>/); default: the newest under --log-dir",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=Path(project_root()) / "logs",
        help="where to look for the newest sweep (default: the project's logs/)",
    )
    probe = parser.add_mutually_exclusive_group()
    probe.add_argument(
        "--probe",
        dest="probe",
        action="store_const",
        const="always",
        default="auto",
        help="run the interleaved speed probe again (default: reuse SWEEP_DIR/probe.json)",
    )
    probe.add_argument(
        "--no-probe",
        dest="probe",
        action="store_const",
        const="never",
        help="leave the probe out: speed and memory from the per-run figures only",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # TensorBoard's event reader narrates every file it opens
    logging.getLogger("tensorboard").setLevel(logging.WARNING)
    try:
        sweep_dir = args.sweep_dir or newest_sweep(args.log_dir)
        report = build_report(sweep_dir, probe=args.probe)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

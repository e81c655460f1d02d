"""`harness report RUN_DIR`: folded stacks, flame graphs, plots and summary.md for a results dir."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.api.report import write_report

EXAMPLES = """examples:
  harness report results/run-20260101T000000Z    # re-draw a run's summary, plots, flame graphs
  harness report results/bench --out /tmp/bench-report   # a folder of CSVs: report elsewhere
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="a directory made by run, crosscheck or matrix (or, with --out, any folder of CSVs)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR",
        help="write the report here instead of into RUN_DIR (needed for a directory that is "
        "not a run's, such as results/bench, whose own files are never rewritten)",
    )


def run(args: argparse.Namespace) -> int:
    for path in write_report(args.run_dir, out=args.out):
        print(path)
    return 0

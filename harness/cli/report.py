"""`harness report RUN_DIR`: folded stacks, flame graphs, plots and summary.md for a results dir."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  harness report results/run-20260101T000000Z    # re-draw a run's summary, plots, flame graphs
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="results directory (CSV per map + run.json, or results/bench)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.report.summary import write_report

    for path in write_report(args.run_dir):
        print(path)
    return 0

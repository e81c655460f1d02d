"""`harness diff RUN_A RUN_B`: a differential flame graph and per-stack table of two runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.api.diff import diff as compare
from harness.cli.options import at_least

EXAMPLES = """examples:
  harness diff results/run-A results/run-B                  # the runs' only stack map
  harness diff results/matrix-ktrace-X/6.1 results/matrix-ktrace-X/6.12 --map @stacks
  harness diff before.folded after.folded --keep-offsets    # folded files, exact frames
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, metavar="RUN_A",
                        help="the baseline: a run directory, a stack CSV or a .folded file")
    parser.add_argument("run_b", type=Path, metavar="RUN_B",
                        help="the run compared with it (frame widths come from B)")
    parser.add_argument("--map", dest="map_name", metavar="@NAME",
                        help="stack map to compare (default: the run's only stack map)")
    parser.add_argument("--out", type=Path,
                        help="directory for the diff files (default results/diff-<time>)")
    parser.add_argument("--keep-offsets", action="store_true",
                        help="compare frames with their +offset (default: by function name)")
    parser.add_argument("--top", type=at_least(0), default=10, help="changed stacks shown")


def run(args: argparse.Namespace) -> int:
    diff = compare(args.run_a, args.run_b, out=args.out, map_name=args.map_name,
                   keep_offsets=args.keep_offsets)
    a, b = diff.a, diff.b
    for line in [*diff.notes, *diff.differences]:
        print(f"warning: {line}", file=sys.stderr)
    print(f"A: {a.source} ({a.total} samples, {len(a.counts)} stacks)")
    print(f"B: {b.source} ({b.total} samples, {len(b.counts)} stacks)")
    print(
        f"{len(diff.rows)} stacks: {len(diff.only_a)} only in A, {len(diff.only_b)} only in B, "
        f"{len(diff.rows) - len(diff.only_a) - len(diff.only_b)} in both"
    )
    changed = [r for r in diff.rows if r.delta][: args.top]
    if changed:
        print(f"\nlargest changes (of {sum(1 for r in diff.rows if r.delta)}), B-A, leaf last:")
        for r in changed:
            frames = r.stack if len(r.stack) <= 4 else ("..", *r.stack[-3:])
            print(f"  {r.delta:+7d}  ({r.count_a} -> {r.count_b})  {';'.join(frames)}")
    else:
        print("\nno stack changed its count")
    print()
    for path in diff.files:
        print(path)
    return 0

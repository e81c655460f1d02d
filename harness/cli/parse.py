"""`harness parse FILE`: saved bpftrace output -> a summary table per map (and CSVs)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.api.parse import FORMATS, parse_file
from harness.cli.options import at_least

if TYPE_CHECKING:
    import pandas as pd


EXAMPLES = """examples:
  harness parse out.txt                      # bpftrace text saved with `bpftrace -e ... > out.txt`
  harness parse out.json --format json       # bpftrace -f json output
  harness parse out.txt --csv /tmp/maps      # one CSV per map plus run.json
  harness parse out.txt --top 50             # more rows per map
  harness parse out.txt --program prog.bt    # printf lines shaped like map lines stay text
  harness parse results/RUN/stdout.txt       # a run's output, read with the program in run.json
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="bpftrace stdout saved to a file")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="text (default) or json (`bpftrace -f json`); guessed when omitted")
    parser.add_argument("--csv", type=Path, metavar="DIR",
                        help="write one CSV per map plus run.json into DIR")
    parser.add_argument("--program", type=Path, metavar="FILE",
                        help="the bpftrace program that printed FILE (default: the program in "
                        "run.json beside FILE, if any): a printf line shaped like an entry of a "
                        "map the program does not have then stays a printed line")
    parser.add_argument("--rows", "--top", type=at_least(0), default=10, dest="rows",
                        help="rows shown per map, largest values first (default 10); "
                        "the table says how many it leaves out")


def run(args: argparse.Namespace) -> int:
    from harness.cli.tables import counts_line, say_warnings  # tabulate: after the parse

    parsed = parse_file(args.file, format=args.format, program=args.program, csv=args.csv)
    output, frames = parsed.output, parsed.frames
    say_warnings("parse", output.warnings, len(output.unparsed))
    for line in parsed.differences:
        print(f"parse: not as printed: {line}", file=sys.stderr)
    try:
        _print_summary(parsed.path, parsed.format, output.probes, len(output.lines), frames,
                       args.rows, parsed.program_from)
        print(f"yield: {counts_line(output.counts())}")
        if parsed.written is not None:
            print(f"\nwrote {len(frames)} CSV files and run.json to {parsed.written}")
    except BrokenPipeError:  # reader went away (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    parsed.check()  # the CSVs went elsewhere: said after the summary, which is not lost
    return 0


def _print_summary(path: Path, fmt: str, probes: int | None, n_lines: int,
                   frames: Mapping[str, pd.DataFrame], rows: int, program_from: str) -> None:
    from harness.cli.tables import render

    print(f"{path}: format {fmt}, probes {probes}, {n_lines} printed lines, "
          f"{len(frames)} maps" + (f", program from {program_from}" if program_from else ""))
    for name, frame in frames.items():
        print(f"\n{name}  ({len(frame)} rows)")
        print(render(frame, rows))

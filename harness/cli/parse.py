"""`harness parse FILE`: saved bpftrace output -> a summary table per map (and CSVs)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import at_least
from harness.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


EXAMPLES = """examples:
  harness parse out.txt                      # bpftrace text saved with `bpftrace -e ... > out.txt`
  harness parse out.json --format json       # bpftrace -f json output
  harness parse out.txt --csv /tmp/maps      # one CSV per map plus run.json
  harness parse out.txt --top 50             # more rows per map
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="bpftrace stdout saved to a file")
    parser.add_argument("--format", choices=("text", "json"), default=None,
                        help="text (default) or json (`bpftrace -f json`); guessed when omitted")
    parser.add_argument("--csv", type=Path, metavar="DIR",
                        help="write one CSV per map plus run.json into DIR")
    parser.add_argument("--rows", "--top", type=at_least(0), default=10, dest="rows",
                        help="rows shown per map, largest values first (default 10); "
                        "the table says how many it leaves out")


def _guess_format(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "json" if first.lstrip().startswith("{") else "text"


def run(args: argparse.Namespace) -> int:
    from harness.output.frames import to_frames
    from harness.output.parse import parse_json, parse_text
    from harness.report.rundir import check_writable, write_run_dir, written_or_kept

    path: Path = args.file
    if args.csv:  # before parsing: a big file is not parsed only to be refused
        check_writable(args.csv, "pass a writable --csv DIR")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err.__class__.__name__}: {err}",
                         "give a readable bpftrace output file") from None
    fmt = args.format or _guess_format(text)
    output = parse_json(text) if fmt == "json" else parse_text(text)
    frames = to_frames(output)
    if args.csv:  # written before the summary, so a closed pipe (`| head`) loses nothing
        meta = {"command": "harness parse", "source": str(path.resolve()), "format": fmt,
                "probes": output.probes, "lines": output.lines}
        written, write_error = written_or_kept(
            lambda where: write_run_dir(where, frames, meta), args.csv
        )
    from harness.cli.tables import counts_line, say_warnings

    say_warnings("parse", output.warnings, len(output.unparsed))
    try:
        _print_summary(path, fmt, output.probes, len(output.lines), frames, args.rows)
        print(f"yield: {counts_line(output.counts())}")
        if args.csv:
            print(f"\nwrote {len(frames)} CSV files and run.json to {written}")
    except BrokenPipeError:  # reader went away (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.csv and write_error is not None:
        raise write_error
    return 0


def _print_summary(path: Path, fmt: str, probes: int | None, n_lines: int,
                   frames: Mapping[str, pd.DataFrame], rows: int) -> None:
    from harness.cli.tables import render

    print(f"{path}: format {fmt}, probes {probes}, {n_lines} printed lines, "
          f"{len(frames)} maps")
    for name, frame in frames.items():
        print(f"\n{name}  ({len(frame)} rows)")
        print(render(frame, rows))

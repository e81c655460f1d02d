"""`harness parse FILE`: saved bpftrace output -> a summary table per map (and CSVs)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import at_least
from harness.errors import HarnessError, UsageError
from harness.output.printed import check_frames, printed
from harness.report.record import ParseRecord, read_record
from harness.report.rundir import check_writable, rewrite_meta, write_run_dir, written_or_kept

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
    parser.add_argument("--format", choices=("text", "json"), default=None,
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


def _guess_format(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "json" if first.lstrip().startswith("{") else "text"


def _read(path: Path, fix: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err.__class__.__name__}: {err}", fix) from None


def _program(path: Path, given: Path | None) -> tuple[str | None, str]:
    """The program that printed `path`, and where it came from ('' when none is known): the
    one given, else a run directory's run.json (`program`), else none (any `@name` line
    shaped like an entry is then read as one)."""
    if given is not None:
        return _read(given, "give --program a readable bpftrace program file"), str(given)
    try:
        record = read_record(path.parent)
    except HarnessError:
        return None, ""  # not a run directory we can read: no program known
    program = getattr(record, "program", None)
    return (program, str(path.parent / "run.json")) if isinstance(program, str) else (None, "")


def run(args: argparse.Namespace) -> int:
    from harness.output.frames import to_frames
    from harness.output.parse import parse_json, parse_text
    from harness.report.totals import check_run_dir

    path: Path = args.file
    if args.csv:  # before parsing: a big file is not parsed only to be refused
        check_writable(args.csv, "pass a writable --csv DIR")
    text = _read(path, "give a readable bpftrace output file")
    fmt = args.format or _guess_format(text)
    program, program_from = _program(path, args.program)
    output = parse_json(text) if fmt == "json" else parse_text(text, program=program)
    frames = to_frames(output)
    counts = printed(output)
    if args.csv:  # written before the summary, so a closed pipe (`| head`) loses nothing
        meta = ParseRecord(command="harness parse", source=str(path.resolve()), format=fmt,
                           probes=output.probes, lines=output.lines, printed=counts)
        written, write_error = written_or_kept(
            lambda where: write_run_dir(where, frames, meta), args.csv
        )
        differences = check_run_dir(written, counts, frames)
        if differences:
            meta.printed_differences = differences
            rewrite_meta(written, meta)
    else:
        differences = check_frames(counts, frames)
    from harness.cli.tables import counts_line, say_warnings

    say_warnings("parse", output.warnings, len(output.unparsed))
    for line in differences:
        print(f"parse: not as printed: {line}", file=sys.stderr)
    try:
        _print_summary(path, fmt, output.probes, len(output.lines), frames, args.rows,
                       program_from if fmt == "text" else "")
        print(f"yield: {counts_line(output.counts())}")
        if args.csv:
            print(f"\nwrote {len(frames)} CSV files and run.json to {written}")
    except BrokenPipeError:  # reader went away (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.csv and write_error is not None:
        raise write_error
    return 0


def _print_summary(path: Path, fmt: str, probes: int | None, n_lines: int,
                   frames: Mapping[str, pd.DataFrame], rows: int, program_from: str) -> None:
    from harness.cli.tables import render

    print(f"{path}: format {fmt}, probes {probes}, {n_lines} printed lines, "
          f"{len(frames)} maps" + (f", program from {program_from}" if program_from else ""))
    for name, frame in frames.items():
        print(f"\n{name}  ({len(frame)} rows)")
        print(render(frame, rows))

"""`harness parse FILE`: saved bpftrace output -> a summary table per map (and CSVs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="bpftrace stdout saved to a file")
    parser.add_argument("--format", choices=("text", "json"), default=None,
                        help="text (default) or json (`bpftrace -f json`); guessed when omitted")
    parser.add_argument("--csv", type=Path, metavar="DIR",
                        help="write one CSV per map plus run.json into DIR")
    parser.add_argument("--rows", type=int, default=10, help="rows shown per map (default 10)")


def _guess_format(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return "json" if first.lstrip().startswith("{") else "text"


def run(args: argparse.Namespace) -> int:
    from harness.frames import to_frames
    from harness.parse import parse_json, parse_text
    from harness.results import fold_stack, write_run_dir

    path: Path = args.file
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err.__class__.__name__}: {err}",
                         "give a readable bpftrace output file") from None
    fmt = args.format or _guess_format(text)
    output = parse_json(text) if fmt == "json" else parse_text(text)
    frames = to_frames(output)
    print(f"{path}: format {fmt}, probes {output.probes}, {len(output.lines)} printed lines, "
          f"{len(frames)} maps")
    for name, frame in frames.items():
        shown = frame.head(args.rows).copy()
        for col in shown.columns:
            if shown[col].dtype == object:
                shown[col] = shown[col].map(
                    lambda v: fold_stack(v)[-60:] if isinstance(v, tuple) else v)
        print(f"\n{name}  ({len(frame)} rows)")
        print(shown.to_string(index=False))
    if args.csv:
        meta = {"command": "harness parse", "source": str(path.resolve()), "format": fmt,
                "probes": output.probes, "lines": output.lines}
        write_run_dir(args.csv, frames, meta)
        print(f"\nwrote {len(frames)} CSV files and run.json to {args.csv}")
    return 0

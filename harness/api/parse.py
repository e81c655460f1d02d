"""`parse_file`: bpftrace output saved in a file (text or `-f json`) -> its parsed output and a
frame per map, and with `csv=` a run directory of CSVs and run.json (`harness parse`).

Every map's printed entries and totals are checked against its frame (and, when written, its
CSV and .folded file); a difference is in `Parsed.differences`, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import arguments
from harness.errors import HarnessError, UsageError
from harness.output.printed import check_frames, printed
from harness.report.record import ParseRecord, read_record
from harness.report.rundir import check_writable, rewrite_meta, write_run_dir, written_or_kept

if TYPE_CHECKING:
    import pandas as pd

    from harness.output.model import Output

__all__ = ["FORMATS", "Parsed", "parse_file"]

FORMATS = ("text", "json")


@dataclass
class Parsed:
    """One saved output, parsed: `frames` (a DataFrame per map), `output` (the parsed model:
    printed lines, warnings, lines not understood), the `format` read, and `program_from`,
    where the program that printed it came from ('' when none was known or the file is json).

    `differences` are what a map's frame (or CSV, .folded file) holds against what bpftrace
    printed; `written` is the run directory of `csv=`, and `error` the typed error that kept it
    from being written there (it is then in a temporary directory, `written`)."""

    path: Path
    format: str
    output: Output
    frames: dict[str, pd.DataFrame]
    program_from: str = ""
    differences: list[str] = field(default_factory=list)
    written: Path | None = None
    error: HarnessError | None = None

    def check(self) -> Parsed:
        """Raise the error that kept the CSVs from their directory; else self."""
        if self.error is not None:
            raise self.error
        return self


def parse_file(
    path: Path | str,
    *,
    format: str | None = None,
    program: Path | str | None = None,
    csv: Path | str | None = None,
) -> Parsed:
    """Parse bpftrace's output saved in `path`. `format` is 'text' or 'json' (None: json when
    the first line that is not blank starts with '{'). `program` is the file of the bpftrace
    program that printed it (None: the program in run.json beside `path`, if any): a printf
    line shaped like an entry of a map the program does not have then stays a printed line.
    `csv` is a directory for one CSV per map and run.json, checked before the file is read."""
    from harness.output.frames import to_frames  # pandas and lark: loaded when a file is read
    from harness.output.parse import parse_json, parse_text
    from harness.report.totals import check_run_dir

    source = arguments.path("path", path, "'out.txt'")
    fmt = arguments.choice("format", format, FORMATS)
    given = None if program is None else arguments.path("program", program, "'prog.bt'")
    into = None if csv is None else arguments.path("csv", csv, "'/tmp/maps'")
    if into is not None:  # before parsing: a big file is not parsed only to be refused
        check_writable(into, "pass a writable --csv DIR")
    text = _read(source, "give a readable bpftrace output file")
    fmt = fmt or guess_format(text)
    program_text, program_from = _program(source, given)
    output = parse_json(text) if fmt == "json" else parse_text(text, program=program_text)
    done = Parsed(source, fmt, output, to_frames(output),
                  program_from=program_from if fmt == "text" else "")
    counts = printed(output)
    if into is None:
        done.differences = check_frames(counts, done.frames)
        return done
    meta = ParseRecord(command="harness parse", source=str(source.resolve()), format=fmt,
                       probes=output.probes, lines=output.lines, printed=counts)
    frames = done.frames
    done.written, done.error = written_or_kept(lambda where: write_run_dir(where, frames, meta),
                                               into)
    done.differences = check_run_dir(done.written, counts, frames)
    if done.differences:
        meta.printed_differences = done.differences
        rewrite_meta(done.written, meta)
    return done


def guess_format(text: str) -> str:
    """'json' when the first line that is not blank starts with '{', else 'text'."""
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

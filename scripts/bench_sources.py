#!/usr/bin/env python3
"""Move a bench directory's measured programs from the layout before issue 22 into the one
`harness bench` writes now, without measuring anything again.

Before, each bench wrote its measured programs beside its CSV as `<stem>.bt`, `<stem>.bpf.c`
and `<stem>.floor.bpf.c`, so the same program measured by many benches (the twin under two
bpftrace releases, on two guests) was a file per bench. Now each is written once under
`sources/`, named by its content, and the bench's CSV (column `program`) and `.md` name it.

For each `<stem>.csv` with such files beside it, this script writes their texts as they were
measured through the bench's own writer (harness.compare.bench_cases.write_sources), fills the
CSV's `program` column (every other column and figure kept as it is), adds the `.md`'s
'programs measured' line, and removes the old files. A bench already in the new layout is left
alone. Run it over results/bench once:

    scripts/bench_sources.py [--dir results/bench]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.compare import bench, bench_cases  # noqa: E402

NOTE_BEFORE = "- cycles and instructions per run:"  # where `harness bench` puts the line


def old_sources(csv_path: Path) -> dict[str, Path]:
    """mode -> the old-layout file of its measured program beside `csv_path`."""
    stem = csv_path.name.removesuffix(".csv")
    found = {mode: csv_path.with_name(stem + suffix)
             for mode, suffix in bench_cases.SOURCE_SUFFIX.items()}
    return {mode: path for mode, path in found.items() if path.is_file()}


def convert(csv_path: Path) -> list[Path]:
    """One bench: its programs into sources/, its CSV and .md naming them; the files written."""
    out_dir = csv_path.parent
    olds = old_sources(csv_path)
    texts = {mode: path.read_text() for mode, path in olds.items()}
    written = bench_cases.write_sources(texts, out_dir)
    programs = {mode: str(path.relative_to(out_dir)) for mode, path in written.items()}
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or ())
        rows = list(reader)
    if "program" not in fields:  # where bench.ROW_FIELDS has it
        at = bench.ROW_FIELDS.index("program")
        fields.insert(fields.index(bench.ROW_FIELDS[at - 1]) + 1, "program")
    for row in rows:
        row["program"] = programs.get(row["mode"].removeprefix(bench.TOGETHER), "")
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    md = csv_path.with_suffix(".md")
    if md.is_file():
        lines = md.read_text().splitlines()
        note = bench_cases.programs_note(programs, texts)
        at = next((i for i, line in enumerate(lines) if line.startswith(NOTE_BEFORE)),
                  len(lines))
        md.write_text("\n".join([*lines[:at], *note, *lines[at:]]) + "\n")
    for path in olds.values():
        path.unlink()
    return [csv_path, *([md] if md.is_file() else []), *written.values()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=REPO / "results" / "bench",
                    help="the bench directory (default results/bench)")
    args = ap.parse_args(argv)
    benches = sorted(p for p in args.dir.glob("*.csv") if old_sources(p))
    for csv_path in benches:
        for path in convert(csv_path):
            print(path)
    print(f"{len(benches)} benches moved to the content-addressed layout", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

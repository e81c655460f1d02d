"""The printed-totals invariant over a run directory: every map's CSV, `.folded` file and flame
page against what bpftrace printed (run.json's `printed`, from harness.output.printed).

`check_run_dir` reads the files back as a reader would get them, so a difference means the
file on disk lost or gained something; each is one line naming the map, the printing and the
file. `harness run` and `harness parse --csv` record the lines in run.json
(`printed_differences`) and print them on stderr; the flame page says "N of M shown".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.output.printed import check_frames, differences, measure, shown_printing
from harness.report.flamegraph import parse_folded
from harness.report.rundir import csv_name
from harness.report.summary import read_table

_PAGE_DATA = re.compile(r'<script id="flame-data" type="application/json">(.*?)</script>', re.S)


def page_total(path: Path) -> int | float | None:
    """The total a flame page draws (its root frame's count), read from the page's data."""
    match = _PAGE_DATA.search(path.read_text(encoding="utf-8"))
    if match is None:
        return None
    data = json.loads(match.group(1))
    values = data.get("v") or []
    return values[0] if values else 0


def check_run_dir(run_dir: Path, printed: Mapping[str, Sequence[Mapping[str, Any]]],
                  tables: Mapping[str, Any] | None = None) -> list[str]:
    """Differences between what bpftrace printed and the run directory's files (and the
    in-memory tables or frames, when given), one line each; [] when every count agrees."""
    lines = [] if tables is None else check_frames(printed, tables)
    for name, want in printed.items():
        csv = run_dir / csv_name(name)
        if not csv.exists():
            lines.append(f"{name}: {csv.name} is missing")
            continue
        cols = read_table(csv)
        lines += differences(name, csv.name, want, measure(cols))
        shown = shown_printing(cols)
        for path in (csv.with_suffix(".folded"), csv.with_suffix(".flame.html")):
            if not path.exists():
                continue
            if path.suffix == ".folded":
                total: int | float | None = sum(parse_folded(
                    path.read_text(encoding="utf-8").splitlines()).values())
            else:
                total = page_total(path)
            lines += differences(name, path.name, want,
                                 {shown: (0, None if total is None else int(total))},
                                 entries=False, only=shown)
    return lines


def checked_run_dir(run_dir: Path, printed: Mapping[str, Sequence[Mapping[str, Any]]],
                    tables: Mapping[str, Any] | None = None) -> list[str]:
    """`check_run_dir` for a run that is already written: a check that cannot be made (a file
    unreadable, damaged) is itself the one line, never an exception that loses the run."""
    try:
        return check_run_dir(run_dir, printed, tables)
    except (OSError, ValueError, HarnessError) as err:
        return [f"the printed totals could not be checked: {err}"]

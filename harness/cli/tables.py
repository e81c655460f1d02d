"""Terminal tables for map frames: the rows that matter first, and always a word on what is hidden.

Rendered with tabulate (the same library `DataFrame.to_markdown` uses), so the CLI and
summary.md lay out tables alike. A table never hides data silently: rows cut by `top`, zero
buckets and earlier printings are counted in a note under the table.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from harness.output.columns import as_columns
from harness.report.plots import HIST_COLUMNS, bucket_label

if TYPE_CHECKING:
    import pandas as pd

    from harness.output.columns import Table


def _is_stack(value: object) -> bool:
    return isinstance(value, tuple)


def _stack_cell(frames: tuple[str, ...], depth: int | None) -> str:
    """Frames leaf first, one a line, as bpftrace prints them; deep stacks say what they hide."""
    if depth is None or len(frames) <= depth:
        return "\n".join(frames)
    return "\n".join(frames[:depth]) + f"\n… {len(frames) - depth} more frames"


def _order(cols: dict[str, list[Any]]) -> list[int]:
    """Row order: largest first for value/stats maps (bpftrace prints smallest first); hists as
    printed."""
    rows = range(len(next(iter(cols.values()), [])))
    if "lo" in cols:
        return list(rows)
    for col in ("value", "count"):
        if col in cols and cols[col] and all(type(v) is int for v in cols[col]):
            values = cols[col]
            return sorted(rows, key=lambda i: -values[i])  # stable: ties keep print order
    return list(rows)


def render(
    frame: pd.DataFrame | Table, top: int | None = 10, *, stack_depth: int | None = None
) -> str:
    """One map's table with a note on every row, bucket or printing it does not show.

    Takes a DataFrame or a plain Table (harness.output.columns: `harness run` prints without
    pandas). `top` bounds the rows shown for every kind of map (for a histogram: its non-zero
    buckets). A map printed several times shows its last printing; the CSV holds them all.
    """
    cols = as_columns(frame)
    notes: list[str] = []
    if cols.get("printing"):
        last = max(cols["printing"])
        keep = [i for i, p in enumerate(cols["printing"]) if p == last]
        cols = {c: [v[i] for i in keep] for c, v in cols.items() if c not in ("printing", "t_s")}
        notes.append(f"printing {last} of {last} shown; every printing is in the CSV")
    if "lo" in cols:
        counts = cols["count"]
        zero = sum(1 for c in counts if c == 0)
        keep = list(range(len(counts)))
        if zero and zero < len(counts):
            keep = [i for i, c in enumerate(counts) if c != 0]
            notes.append(f"{zero} empty buckets hidden")
        keys = [c for c in cols if c not in HIST_COLUMNS]
        shown = {c: [cols[c][i] for i in keep] for c in keys}
        shown["bucket"] = [bucket_label(cols["lo"][i], cols["hi"][i]) for i in keep]
        shown["count"] = [counts[i] for i in keep]
        order = list(range(len(keep)))
    else:
        shown = cols
        order = _order(cols)
    total = len(order)
    if top is not None and total > top:
        order = order[:top]
        notes.append(f"… {total - top} more rows (of {total}; --top to show more)")
    if total == 0:
        return "(no entries)" + "".join(f"\n{n}" for n in notes)
    cells = [
        [_stack_cell(v, stack_depth) if _is_stack(v) else _short(v)
         for v in (shown[c][i] for c in shown)]
        for i in order
    ]
    table = tabulate(cells, headers=list(shown), tablefmt="simple", disable_numparse=True)
    return table + "".join(f"\n{n}" for n in notes)


CELL_MOST = 200  # characters of one value shown in a table cell; the CSV holds it whole


def _short(value: object) -> object:
    """A string too long for a terminal (a 10 MB value) cut, saying how long it is."""
    if isinstance(value, str) and len(value) > CELL_MOST:
        return f"{value[:CELL_MOST // 2]}… ({len(value)} characters; whole in the CSV)"
    return value


def counts_line(counts: dict[str, int]) -> str:
    """`Output.counts()` as one line: what the run yielded, so nothing goes unnoticed."""
    return ", ".join(f"{n} {name.replace('lines', 'printed lines')}"
                     for name, n in counts.items())


def say_warnings(command: str, warnings: list[str], unparsed: int, most: int = 10) -> None:
    """The parser's warnings on stderr (each names its line); unread lines said first."""
    if unparsed:
        print(f"harness {command}: {unparsed} line(s) of bpftrace output were not read "
              "into a map or the printed lines; see the warnings", file=sys.stderr)
    for warning in warnings[:most]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(warnings) > most:
        print(f"warning: ... {len(warnings) - most} more (all in run.json)", file=sys.stderr)

"""Terminal tables for map frames: the rows that matter first, and always a word on what is hidden.

Rendered with tabulate (the same library `DataFrame.to_markdown` uses), so the CLI and
summary.md lay out tables alike. A table never hides data silently: rows cut by `top`, zero
buckets and earlier printings are counted in a note under the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.report.plots import HIST_COLUMNS, bucket_label

if TYPE_CHECKING:
    import pandas as pd

def _is_stack(value: object) -> bool:
    return isinstance(value, tuple)


def _stack_cell(frames: tuple[str, ...], depth: int | None) -> str:
    """Frames leaf first, one a line, as bpftrace prints them; deep stacks say what they hide."""
    if depth is None or len(frames) <= depth:
        return "\n".join(frames)
    return "\n".join(frames[:depth]) + f"\n… {len(frames) - depth} more frames"


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Largest first for value/stats maps (bpftrace prints smallest first); hists as printed."""
    if "lo" in frame.columns:
        return frame
    for col in ("value", "count"):
        if col in frame.columns and frame[col].dtype.kind in "iu":
            return frame.sort_values(col, ascending=False, kind="stable")
    return frame


def render(frame: pd.DataFrame, top: int | None = 10, *, stack_depth: int | None = None) -> str:
    """One map's table with a note on every row, bucket or printing it does not show.

    `top` bounds the rows shown for every kind of map (for a histogram: its non-zero buckets).
    A map printed several times shows its last printing; the CSV holds them all.
    """
    notes: list[str] = []
    shown = frame
    if "printing" in shown.columns and len(shown):
        last = int(shown["printing"].max())
        shown = shown[shown["printing"] == last].drop(columns=["printing", "t_s"],
                                                      errors="ignore")
        notes.append(f"printing {last} of {last} shown; every printing is in the CSV")
    if "lo" in shown.columns:
        zero = int((shown["count"] == 0).sum())
        if zero and zero < len(shown):
            shown = shown[shown["count"] > 0]
            notes.append(f"{zero} empty buckets hidden")
        shown = shown.assign(bucket=[bucket_label(lo, hi) for lo, hi in
                                     zip(shown["lo"], shown["hi"], strict=True)])
        keys = [c for c in shown.columns if c not in (*HIST_COLUMNS, "bucket")]
        shown = shown[[*keys, "bucket", "count"]]
    else:
        shown = ordered(shown)
    total = len(shown)
    if top is not None and total > top:
        shown = shown.head(top)
        notes.append(f"… {total - top} more rows (of {total}; --top to show more)")
    if total == 0:
        return "(no entries)" + "".join(f"\n{n}" for n in notes)
    cells = [[_stack_cell(v, stack_depth) if _is_stack(v) else v for v in row]
             for row in shown.itertuples(index=False)]
    from tabulate import tabulate

    table = tabulate(cells, headers=list(shown.columns), tablefmt="simple",
                     disable_numparse=True)
    return table + "".join(f"\n{n}" for n in notes)

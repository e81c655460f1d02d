"""Stack maps as flame graphs: folded-stack lines (what flamegraph.pl and speedscope read) and an
interactive plotly icicle chart that works offline.

A stack CSV (written by harness.report.rundir) holds one stack per row, frames joined with ';' root
first, plus a count column. Extra key columns (comm, pid, ...) become the root-most frames so a
flame graph splits by them first, as `stackcollapse` tools do.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# One printed stack frame: `sym+off` (optionally ` (module)`), a raw address, or the placeholder
# bpftrace prints for frames it cannot symbolize.
_FRAME_STRICT = re.compile(r"^(?:[\w.$@]+\+\d+|0x[0-9a-fA-F]+|\[unknown\])(?: \(.*\))?$")
# Frames only a kernel stack has: syscall entry, kernel-half addresses.
_KERNEL_FRAME = re.compile(
    r"^(?:entry_SYSCALL|do_syscall_64|ret_from_fork|asm_\w+|0xffff[89a-f][0-9a-f]{11})"
)
COUNT_COLUMNS = ("value", "count")
EMPTY_STACK = "[empty stack]"


def stack_columns(frame: pd.DataFrame) -> list[str]:
    """The columns holding ';'-joined stacks (user stacks first), [] when the map has none.

    A column qualifies by name (`kstack`, `ustack`, `*stack*`) or by content: every value splits
    on ';' into frames that look like `symbol+offset`/addresses and at least one has two frames.
    User stacks go first because a user stack's leaf is where the kernel stack's root begins.
    """
    if not any(c in frame.columns for c in COUNT_COLUMNS):
        return []
    from pandas.api.types import is_numeric_dtype

    found = []
    for col in frame.columns:
        if col in COUNT_COLUMNS or is_numeric_dtype(frame[col]):
            continue
        values = [v for v in frame[col].tolist() if isinstance(v, str) and v]
        by_name = "stack" in str(col).lower()
        by_content = (
            bool(values)
            and any(";" in v for v in values)
            and all(_FRAME_STRICT.match(part) for v in values for part in v.split(";"))
        )
        if by_name or by_content:
            found.append(str(col))
    return sorted(found, key=lambda c: _stack_order(c, list(frame[c])))


def _stack_order(col: str, values: list[object]) -> int:
    """0 for user stacks, 2 for kernel stacks (by name, else by kernel frames), 1 unknown."""
    name = col.lower()
    if "ustack" in name:
        return 0
    if "kstack" in name:
        return 2
    frames = [f for v in values if isinstance(v, str) for f in v.split(";")]
    return 2 if any(_KERNEL_FRAME.match(f) for f in frames) else 0


def stack_column(frame: pd.DataFrame) -> str | None:
    """The first stack column (see stack_columns), or None."""
    cols = stack_columns(frame)
    return cols[0] if cols else None


def _count_column(frame: pd.DataFrame) -> str:
    for col in COUNT_COLUMNS:
        if col in frame.columns:
            return col
    raise KeyError("no value/count column")


def folded_counts(frame: pd.DataFrame, stack_cols: str | Sequence[str]) -> Counter[tuple[str, ...]]:
    """Stack (root first; other keys prepended, several stack columns concatenated) -> count."""
    stack_cols = [stack_cols] if isinstance(stack_cols, str) else list(stack_cols)
    count_col = _count_column(frame)
    # stats maps also carry average/total, hist maps lo/hi: not frames.
    skip = {*stack_cols, *COUNT_COLUMNS, "average", "total", "lo", "hi"}
    prefix_cols = [c for c in frame.columns if c not in skip]
    totals: Counter[tuple[str, ...]] = Counter()
    for record in frame.to_dict("records"):
        frames = [_clean(str(record[c])) for c in prefix_cols]
        for col in stack_cols:
            raw = record.get(col)
            stack = raw if isinstance(raw, str) and raw else EMPTY_STACK
            frames += [_clean(f) for f in stack.split(";") if f]
        count = record[count_col]
        if count is None or count != count:  # NA
            continue
        totals[tuple(frames)] += int(count)
    return totals


def _clean(frame: str) -> str:
    """Folded format reserves ';' and newlines; the count is the last space-separated token."""
    return frame.replace(";", ":").replace("\n", " ").strip() or "[blank]"


def folded_lines(counts: Counter[tuple[str, ...]]) -> list[str]:
    """`a;b;c 12` lines, heaviest first then by name, so the file is stable across runs."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [f"{';'.join(stack)} {count}" for stack, count in ordered if count > 0]


def write_folded(counts: Counter[tuple[str, ...]], path: Path) -> Path:
    path.write_text("".join(line + "\n" for line in folded_lines(counts)))
    return path


def parse_folded(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Read folded lines back (used to check round trips and to load external .folded files)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        counts[tuple(stack.split(";"))] += int(count)
    return counts


def icicle_tree(
    counts: Counter[tuple[str, ...]], root: str = "all"
) -> tuple[list[str], list[str], list[str], list[int]]:
    """ids, labels, parents, values for a plotly icicle with branchvalues='total'."""
    totals: Counter[tuple[str, ...]] = Counter()
    for stack, count in counts.items():
        for depth in range(1, len(stack) + 1):
            totals[stack[:depth]] += count
    ids = [root]
    labels = [root]
    parents = [""]
    values = [sum(counts.values())]
    for path in sorted(totals, key=lambda p: (len(p), p)):
        ids.append(_node_id(root, path))
        labels.append(path[-1])
        parents.append(_node_id(root, path[:-1]) if len(path) > 1 else root)
        values.append(totals[path])
    return ids, labels, parents, values


def _node_id(root: str, path: Sequence[str]) -> str:
    return root + ";" + ";".join(path)


def write_flame_html(counts: Counter[tuple[str, ...]], path: Path, title: str) -> Path:
    """Interactive flame graph (root at the bottom, click to zoom); plotly.js inlined."""
    import plotly.graph_objects as go

    ids, labels, parents, values = icicle_tree(counts)
    fig = go.Figure(
        go.Icicle(
            ids=ids,
            labels=labels,
            parents=parents,
            values=values,
            branchvalues="total",
            tiling={"orientation": "v", "flip": "y"},
            hovertemplate="%{label}<br>%{value} samples (%{percentRoot:.1%})<extra></extra>",
            root={"color": "lightgrey"},
        )
    )
    depth = max((len(s) for s in counts), default=1) + 1
    fig.update_layout(
        title=title,
        margin={"t": 50, "l": 10, "r": 10, "b": 10},
        height=max(400, min(2400, 28 * depth + 80)),
    )
    fig.write_html(path, include_plotlyjs=True, full_html=True)
    return path

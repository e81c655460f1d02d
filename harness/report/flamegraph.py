"""Stack maps as flame graphs: folded-stack lines (the interchange format flamegraph.pl, inferno and
speedscope read as is) and the classic interactive flame graph as one small self-contained page.

Why our own page rather than a tool's: flamegraph.pl is CDDL (its source may not be copied into
this project), inferno and speedscope are separate installs (Rust, npm), and the plotly icicle we
used before inlined 4.8 MB of plotly.js per map. The page here is HTML with the SVG inline: the
tree goes in as compact JSON (names interned, parents as indices, about 12 bytes a frame) and
flame.js lays it out and draws it, so a few hundred stacks stay far below 150 KB and frames too
narrow to draw at one zoom level are still there at the next. It follows the published
conventions: root at the bottom, children sorted by name, the warm palette (kernel frames,
marked `_[k]` as flamegraph.pl reads them, orange beside red user frames), click to zoom, regex
search (case-insensitive on request) reporting the matched share; offsets merged into one frame
per function as perf's folded stacks have them (a toggle shows them as printed); speedscope's
sandwich (a function's callers above it, its callees below); the map's unit (samples, µs) and
"N of M shown" against the total bpftrace printed. For two runs, widths from the second and
colour from each frame's own relative change, red grew and blue shrank (difffolded's colours),
comparing shares when the totals differ.

A stack CSV (written by harness.report.rundir) holds one stack per row, frames joined with ';' root
first, plus a count column. Extra key columns (comm, pid, ...) become the root-most frames so a
flame graph splits by them first, as `stackcollapse` tools do; then the user stack, then the
kernel stack, its frames suffixed `_[k]` (which column is which: by name, the program's text, or
the frames, see harness.output.stacks).
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.output.columns import as_columns
from harness.output.stacks import KSTACK, USTACK, stack_kind

if TYPE_CHECKING:
    import pandas as pd

    from harness.output.columns import Table

# One printed stack frame: `sym+off` whatever the symbol (C++ `demo::run_for(double)+124`,
# templates and lambdas, Rust `<T as Trait>::f+8`, Go `main.(*T).f+30`), a raw address, or the
# placeholder bpftrace prints for frames it cannot symbolize; `kstack(perf)`/`ustack(perf)` put
# the address first and may add ` (module)`; a folded file marks kernel frames `_[k]`.
_FRAME = re.compile(r"^(?:[0-9a-f]{6,16} )?(?:[^;\n]*\S\+\d+|0x[0-9a-fA-F]+|\[unknown\])"
                    r"(?: \([^;\n]*\))?(?:_\[k\])?$")
KERNEL_MARK = "_[k]"  # flamegraph.pl's suffix for kernel frames (the page colours them orange)
COUNT_COLUMNS = ("value", "count")
# Columns that are neither keys nor counts: stats maps' average/total, hist buckets, printings.
_NOT_KEYS = ("average", "total", "lo", "hi", "printing", "t_s")
EMPTY_STACK = "[empty stack]"

_INT = re.compile(r"-?\d+")  # a count as folded files and CSVs write it


def _numeric(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in present
    )


def _looks_like_stacks(values: list[str]) -> bool:
    """Every value splits on ';' into frames and at least one has two frames."""
    return (bool(values) and any(";" in v for v in values)
            and all(_FRAME.match(part) for v in values for part in v.split(";")))


def stack_columns(table: Table | pd.DataFrame | Mapping[str, Sequence[Any]]) -> list[str]:
    """The key columns holding ';'-joined stacks (user stacks first), [] when the map has none.

    A column qualifies by name (`kstack`, `ustack`, `*stack*`) or by content: every value splits
    on ';' into frames (see _FRAME) and at least one has two frames. User stacks go first
    because a user stack's leaf is where the kernel stack's root begins.
    """
    cols = as_columns(table)
    if not any(c in cols for c in COUNT_COLUMNS):
        return []
    found = []
    for col, cells in cols.items():
        if col in COUNT_COLUMNS or col in _NOT_KEYS or _numeric(cells):
            continue
        values = [v for v in cells if isinstance(v, str) and v]
        if "stack" in col.lower() or _looks_like_stacks(values):
            found.append(col)
    return sorted(found, key=lambda c: 2 if column_kind(c, cols[c]) == KSTACK else 0)


def stack_values(table: Table | pd.DataFrame | Mapping[str, Sequence[Any]],
                 value_kind: str | None = None) -> bool:
    """Whether the map's `value` column holds stacks (`@s[tid] = kstack`): the program says so
    (`value_kind`, see harness.output.stacks), else every value is ';'-joined frames."""
    cols = as_columns(table)
    if "value" not in cols or _numeric(cols["value"]):
        return False
    if value_kind in (USTACK, KSTACK):
        return True
    return _looks_like_stacks([v for v in cols["value"] if isinstance(v, str) and v])


def column_kind(col: str, values: Sequence[object], hint: str | None = None) -> str | None:
    """'ustack' or 'kstack' for a column of ';'-joined stacks (root first): by name, else
    `hint` (the program's word for it), else by its frames (harness.output.stacks.stack_kind:
    kernel addresses, where the stacks are rooted); None when nothing tells."""
    name = col.lower()
    if "ustack" in name:
        return USTACK
    if "kstack" in name:
        return KSTACK
    if hint in (USTACK, KSTACK):
        return hint
    stacks = [tuple(reversed(v.split(";"))) for v in values if isinstance(v, str) and v]
    return stack_kind(stacks)


def stack_column(table: Table | pd.DataFrame | Mapping[str, Sequence[Any]]) -> str | None:
    """The first stack column (see stack_columns), or None."""
    cols = stack_columns(table)
    return cols[0] if cols else None


def last_printing(cols: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], int | None]:
    """A map printed several times (columns `printing`, `t_s`): the rows of its last printing,
    without those two columns, and that printing's number (None when printed once)."""
    if "printing" not in cols or not cols["printing"]:
        return cols, None
    last = max(int(p) for p in cols["printing"] if p is not None)
    keep = [i for i, p in enumerate(cols["printing"]) if p is not None and int(p) == last]
    rest = {c: [v[i] for i in keep] for c, v in cols.items() if c not in ("printing", "t_s")}
    return rest, last


def folded_counts(
    table: Table | pd.DataFrame | Mapping[str, Sequence[Any]], stack_cols: str | Sequence[str],
    *, kernel: Sequence[str] | None = None,
) -> Counter[tuple[str, ...]]:
    """Stack (root first) -> count: the other key parts (comm, pid, ...) as the root frames, then
    the stack columns in the order given (user stacks first), kernel ones' frames marked `_[k]`.

    `kernel` names the kernel stack columns (default: column_kind says so). An empty stack adds
    no frame when another stack of the row has some (a sample in user mode has no kernel
    stack); a row whose stacks are all empty ends in `[empty stack]`. With `value` among the
    stack columns (stacks as values), every entry counts 1. A map printed several times
    contributes its last printing (the CSV keeps every one).
    """
    stack_cols = [stack_cols] if isinstance(stack_cols, str) else list(stack_cols)
    cols, _ = last_printing(as_columns(table))
    if kernel is None:
        kernel = [c for c in stack_cols if column_kind(c, cols[c]) == KSTACK]
    count_col = None if "value" in stack_cols else next(
        (c for c in COUNT_COLUMNS if c in cols), None)
    if count_col is None and "value" not in stack_cols:
        raise KeyError("no value/count column")
    prefix_cols = [c for c in cols if c not in {*stack_cols, *COUNT_COLUMNS, *_NOT_KEYS}]
    rows = len(cols[stack_cols[0]]) if stack_cols else 0
    totals: Counter[tuple[str, ...]] = Counter()
    for i in range(rows):
        count = 1 if count_col is None else cols[count_col][i]
        if count is None:
            continue
        frames = [_clean("" if cols[c][i] is None else str(cols[c][i])) for c in prefix_cols]
        stacked = False
        for col in stack_cols:
            raw = cols[col][i]
            if not isinstance(raw, str) or not raw:
                continue
            mark = KERNEL_MARK if col in kernel else ""
            frames += [_marked(_clean(f), mark) for f in raw.split(";") if f]
            stacked = True
        if not stacked:
            frames.append(EMPTY_STACK)
        if not isinstance(count, int) and not _INT.fullmatch(str(count)):
            raise ValueError(f"row {i + 1}: {count_col} {str(count)[:40]!r} is not a whole number")
        totals[tuple(frames)] += int(count)
    return totals


def _marked(frame: str, mark: str) -> str:
    return frame + mark if mark and not frame.endswith(mark) else frame


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
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not _INT.fullmatch(count):
            raise ValueError(f"line {n}: {line[:60]!r} is not 'frame;frame;... COUNT'")
        counts[tuple(stack.split(";"))] += int(count)
    return counts


def _tree(
    counts: Mapping[tuple[str, ...], float], baseline: Mapping[tuple[str, ...], float] | None
) -> tuple[list[str], list[int], list[int], list[float], list[float]]:
    """names, and per frame (preorder, root first): name index, parent index, count, base.

    A frame's count is inclusive (its stacks and every stack above it). With a baseline, base is
    the baseline's inclusive count for the same path, and paths only the baseline has are frames
    of count 0: no width, but the page's merged and sandwich views still add them up exactly.
    """
    totals: dict[tuple[str, ...], float] = {(): 0.0}
    for stack, count in counts.items():
        if count <= 0:
            continue
        for depth in range(len(stack) + 1):
            totals[stack[:depth]] = totals.get(stack[:depth], 0.0) + count
    base_totals: dict[tuple[str, ...], float] = {}
    for stack, count in (baseline or {}).items():
        if count <= 0:
            continue
        for depth in range(len(stack) + 1):
            base_totals[stack[:depth]] = base_totals.get(stack[:depth], 0.0) + count
            totals.setdefault(stack[:depth], 0.0)
    name_index: dict[str, int] = {}
    index_of: dict[tuple[str, ...], int] = {}
    names: list[str] = []
    name_ids: list[int] = []
    parents: list[int] = []
    values: list[float] = []
    bases: list[float] = []
    for path in sorted(totals):  # tuple order: every parent before its children
        name = path[-1] if path else "all"
        if name not in name_index:
            name_index[name] = len(names)
            names.append(name)
        index_of[path] = len(name_ids)
        name_ids.append(name_index[name])
        parents.append(index_of[path[:-1]] if path else -1)
        values.append(totals[path])
        bases.append(base_totals.get(path, 0.0))
    return names, name_ids, parents, values, bases


def _number(value: float) -> float | int:
    """Counts as ints in the JSON (smaller, exact); scaled baselines keep 3 decimals."""
    return int(value) if float(value).is_integer() else round(value, 3)


def flame_page(
    counts: Mapping[tuple[str, ...], float],
    title: str,
    *,
    subtitle: str = "",
    baseline: Mapping[tuple[str, ...], float] | None = None,
    order: str = "alpha",
    icicle: bool = False,
    unit: str = "samples",
    merge: bool = True,
    printed_total: float | None = None,
) -> str:
    """The flame graph page as text: HTML with an inline SVG drawn by flame.js from JSON.

    `order` is 'alpha' (children by name, the flame graph convention) or 'heavy' (largest
    first); `icicle` puts the root at the top; `merge` starts with offsets merged (one frame per
    function, as perf's folded stacks have them). All three can be switched in the page.
    `unit` names what the counts are (samples, µs). `printed_total` is the total bpftrace
    printed for this map: the page says "N of M shown", loudly when N differs.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    names, name_ids, parents, values, bases = _tree(counts, baseline)
    data: dict[str, object] = {
        "title": title,
        "subtitle": subtitle,
        "unit": unit,
        "order": order,
        "icicle": icicle,
        "merge": merge,
        "names": names,
        "n": name_ids,
        "p": parents,
        "v": [_number(v) for v in values],
    }
    if baseline is not None:
        data["b"] = [_number(b) for b in bases]
    if printed_total is not None:
        data["printed"] = _number(printed_total)
    # '<' escaped so no frame name can close the <script> element that holds the JSON.
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return _PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        css=_asset("flame.css"),
        data=blob,
        js=_asset("flame.js"),
    )


def write_flame_html(
    counts: Mapping[tuple[str, ...], float],
    path: Path,
    title: str,
    **options: Any,
) -> Path:
    """Write `flame_page(counts, title, **options)` to `path` (opens from file://, no network)."""
    path.write_text(flame_page(counts, title, **options), encoding="utf-8")
    return path


def _asset(name: str) -> str:
    return (Path(__file__).resolve().parent / name).read_text(encoding="utf-8")


ORDERS = ("alpha", "heavy")
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}</style>
</head>
<body>
<header>
<h1 id="title">{title}</h1>
<div id="subtitle">{subtitle}</div>
<div id="shown"></div>
<div id="controls">
<label>Search <input id="search" type="search" placeholder="regex, e.g. ^tcp_|sendmsg"
 spellcheck="false" autocomplete="off"></label>
<label title="match upper and lower case alike"><input id="nocase" type="checkbox">
 ignore case</label>
<span id="matched"></span>
<button id="reset" type="button" disabled>Reset zoom</button>
<button id="merge" type="button"></button>
<button id="order" type="button"></button>
<button id="flip" type="button"></button>
<button id="sandwich" type="button" disabled>Sandwich</button>
</div>
<div id="legend"></div>
</header>
<svg id="flame" xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="title"></svg>
<section id="sandwich-view" hidden>
<h2 id="callers-title"></h2>
<svg id="callers" xmlns="http://www.w3.org/2000/svg" role="img"></svg>
<h2 id="callees-title"></h2>
<svg id="callees" xmlns="http://www.w3.org/2000/svg" role="img"></svg>
</section>
<div id="details">&nbsp;</div>
<div id="tip" hidden></div>
<noscript>This flame graph is drawn by JavaScript; the same stacks are in the .folded file
beside it.</noscript>
<script id="flame-data" type="application/json">{data}</script>
<script>
{js}</script>
</body>
</html>
"""

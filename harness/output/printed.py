"""What bpftrace printed, per map and printing (entries and value total), and the same counts
read back from what the harness made of it (a frame, a table, a CSV, a .folded file).

The invariant of issue 18: for every map and printing, the entry count and value total bpftrace
printed equal those of the frame, the CSV, the `.folded` file and the flame page. `printed`
reads them from the parse (run.json's `printed`); `measure` reads them from columns of any of
the harness's artifacts; `differences` says, one line each, where they disagree.

- entries: the keys printed (a hist's key counts once; a key whose hist has no bucket prints
  a header alone and has no row anywhere, so it is not counted);
- total: the sum of the values for count/sum/int maps, of the `count`s for stats() and
  hist/lhist maps; None for string and stack values (nothing to add up).
A `.folded` file and the flame page hold one line per distinct stack (equal stacks add up, as
flamegraph.pl would), so only their totals are compared, for the printing they show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.output.columns import as_columns
from harness.output.model import Output

Counts = dict[str, list[dict[str, Any]]]  # map -> [{"printing", "entries", "total"}]


def printed(output: Output) -> Counts:
    """Per map, per printing in order: {"printing", "entries", "total"} as bpftrace printed it."""
    out: Counts = {}
    for mp in output.maps:
        if mp.kind in ("hist", "lhist"):
            entries = sum(1 for bs in mp.values if bs)
            total: int | None = sum(b.count for bs in mp.values for b in bs)
        elif mp.kind == "stats":
            entries, total = len(mp), sum(s.count for s in mp.values)
        elif mp.kind == "int":
            entries, total = len(mp), sum(mp.values)
        else:
            entries, total = len(mp), None
        out.setdefault(mp.name, []).append(
            {"printing": mp.printing, "entries": entries, "total": total})
    return out


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def measure(cols: Mapping[str, Sequence[Any]]) -> dict[int, tuple[int, int | None]]:
    """Columns of a frame, table or CSV of one map -> {printing: (entries, total)}; a map
    printed once is printing 1. Totals as `printed` defines them (None when the map has no
    value/count column of ints)."""
    rows = len(next(iter(cols.values()), []))
    printings = [(_int(p) or 1) for p in cols["printing"]] if "printing" in cols else [1] * rows
    hist = {"lo", "hi", "count"} <= set(cols)
    keys = [c for c in cols if c not in ("printing", "t_s", "lo", "hi", "count", "average",
                                         "total", "value")]
    count_col = "count" if "count" in cols else "value" if "value" in cols else None
    values = [_int(v) for v in cols[count_col]] if count_col else []
    summable = bool(values) and all(v is not None for v in values)
    out: dict[int, list[Any]] = {}
    for i in range(rows):
        entry = out.setdefault(printings[i], [0, 0 if summable else None])
        if hist and i and printings[i - 1] == printings[i] and not _new_key(cols, keys, i):
            pass  # another bucket of the same key
        else:
            entry[0] += 1
        if summable:
            entry[1] += values[i]
    return {p: (e, t) for p, (e, t) in out.items()}


def _new_key(cols: Mapping[str, Sequence[Any]], keys: list[str], i: int) -> bool:
    """Row i of a hist's long form starts a key: its key cells differ from the row before,
    or its buckets start again (an open low end, or a low bound not above the last one)."""
    if any(cols[k][i] != cols[k][i - 1] for k in keys):
        return True
    lo, before = cols["lo"][i], cols["lo"][i - 1]
    lo_i, before_i = _int(lo), _int(before)
    return lo_i is None or (before_i is not None and lo_i <= before_i)


def differences(name: str, what: str, want: Sequence[Mapping[str, Any]],
                got: Mapping[int, tuple[int, int | None]], *, entries: bool = True,
                only: int | None = None) -> list[str]:
    """One line per printing where `got` (an artifact's counts) differs from `want` (what
    bpftrace printed). `entries=False` compares totals only (.folded, the page); `only` picks
    the one printing an artifact shows."""
    lines = []
    for p in want:
        n = int(p["printing"])
        if only is not None and n != only:
            continue
        g_entries, g_total = got.get(n, (0, 0 if p["total"] is not None else None))
        bad = []
        if entries and g_entries != p["entries"]:
            bad.append(f"{g_entries} entries, bpftrace printed {p['entries']}")
        if p["total"] is not None and g_total != p["total"]:
            bad.append(f"total {g_total}, bpftrace printed {p['total']}")
        if bad:
            lines.append(f"{name} printing {n}: {what} has " + "; ".join(bad))
    return lines


def check_frames(counts: Mapping[str, Sequence[Mapping[str, Any]]],
                 frames: Mapping[str, Any]) -> list[str]:
    """`differences` of every map's frame or table (anything harness.output.columns.as_columns
    reads) against what bpftrace printed."""
    lines = []
    for name, want in counts.items():
        if name not in frames:
            lines.append(f"{name}: no frame")
            continue
        lines += differences(name, "the frame", want, measure(as_columns(frames[name])))
    return lines


def shown_printing(cols: Mapping[str, Sequence[Any]]) -> int:
    """The printing a map's `.folded` file and flame page show: its last one with rows (the
    exit dump, when bpftrace printed one; flamegraph.last_printing picks the same); 1 for a
    map printed once."""
    if "printing" not in cols or not cols["printing"]:
        return 1
    return max((_int(p) or 1) for p in cols["printing"])


def printed_total(counts: Mapping[str, Any], name: str, printing: int) -> int | None:
    """What bpftrace printed as `name`'s total in that printing (None when unknown)."""
    for p in counts.get(name) or ():
        if isinstance(p, Mapping) and p.get("printing") == printing:
            total = p.get("total")
            return total if isinstance(total, int) else None
    return None

"""Per-map exact comparison of two tracers' frames for any spec: keys, values, buckets.

Each frame is reduced to {key: value}: the key columns (stacks as tuples of frames, compared
frame by frame), plus `lo`/`hi` for hist and lhist buckets (empty buckets dropped: bpftrace
prints the zero buckets between two filled ones, the twin stores none). Values are `value`, or
(count, average, total) for stats. Any difference is a row of the map's diff.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from harness.spec.model import Agg, ProbeSpec


@dataclass
class MapComparison:
    """One compared map: equal or not, and each differing (key, field) with both values."""

    map_name: str
    what: str
    equal: bool
    diff: list[tuple[str, int, int]] = field(default_factory=list)
    bpftrace_rows: int = 0
    libbpf_rows: int = 0

    def diff_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.diff, columns=["key", "bpftrace", "libbpf"])


def _part(v: Any) -> Any:
    """A key part as a plain, hashable Python value."""
    if isinstance(v, tuple | list):
        return tuple(str(f) for f in v)
    if v is None or v is _NA():
        return None
    if isinstance(v, str):
        return v
    try:
        return int(v)
    except (TypeError, ValueError):
        return str(v)


def _NA() -> Any:
    import pandas as pd

    return pd.NA


def reduce_frame(
    frame: pd.DataFrame | None, columns: Sequence[str], kind: str
) -> dict[tuple[Any, ...], tuple[int, ...]]:
    """A map's frame -> {key tuple: value tuple}; hist/lhist keys end in (lo, hi)."""
    if frame is None or frame.empty:
        return {}
    cols = [c for c in columns if c in frame.columns]
    if kind in ("hist", "lhist"):
        names = [*cols, "lo", "hi"]
        values = ["count"]
    elif kind == "stats":
        names, values = cols, ["count", "average", "total"]
    else:
        names, values = cols, ["value"]
    out: dict[tuple[Any, ...], tuple[int, ...]] = {}
    keys = zip(*(frame[c].tolist() for c in names), strict=True) if names else (
        () for _ in range(len(frame))
    )
    vals = zip(*(frame[c].tolist() for c in values), strict=True)
    for key, val in zip(keys, vals, strict=True):
        v = tuple(int(x) for x in val)
        if kind in ("hist", "lhist") and v == (0,):
            continue
        out[tuple(_part(k) for k in key)] = v
    return out


def show_key(key: tuple[Any, ...], kind: str) -> str:
    """A key as one readable cell: stacks folded root first, buckets as [lo, hi)."""
    parts = list(key)
    bucket = ""
    if kind in ("hist", "lhist"):
        lo, hi = parts[-2:]
        parts = parts[:-2]
        bucket = f"[{'...' if lo is None else lo}, {'...' if hi is None else hi})"
    shown = [";".join(reversed(p)) if isinstance(p, tuple) else str(p) for p in parts]
    return ", ".join([*shown, *([bucket] if bucket else [])]) or "(no key)"


VALUE_FIELDS = {"stats": ("count", "average", "total")}


def compare_map(
    agg: Agg, what: str, bpftrace: pd.DataFrame | None, libbpf: pd.DataFrame | None
) -> MapComparison:
    """Exact comparison of one map from both tracers."""
    kind = agg.value_kind()
    cols = agg.columns()
    left, right = reduce_frame(bpftrace, cols, kind), reduce_frame(libbpf, cols, kind)
    fields = VALUE_FIELDS.get(kind, ("",))
    diff: list[tuple[str, int, int]] = []
    for key in sorted(set(left) | set(right), key=repr):
        a, b = left.get(key), right.get(key)
        if a == b:
            continue
        for i, name in enumerate(fields):
            va, vb = (a[i] if a else 0), (b[i] if b else 0)
            if va != vb:
                label = show_key(key, kind) + (f" ({name})" if name else "")
                diff.append((label, va, vb))
    return MapComparison(agg.map, what, not diff, diff, len(left), len(right))


def compare_spec_maps(
    spec: ProbeSpec,
    bpftrace: dict[str, pd.DataFrame],
    libbpf: dict[str, pd.DataFrame],
    describe: dict[str, str] | None = None,
) -> list[MapComparison]:
    """Every map of the spec, compared; a map one side never printed counts as empty."""
    return [
        compare_map(agg, (describe or {}).get(agg.map, agg.map), bpftrace.get(agg.map),
                    libbpf.get(agg.map))
        for agg in spec.aggs
    ]

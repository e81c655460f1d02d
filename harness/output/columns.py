"""Output model -> one table of plain Python columns per map: the frames' shape without pandas.

`harness run` writes its CSVs, folded stacks, flame graphs and summary from these tables, so a
quick run never imports pandas (about 0.8 s of CPU on an idle 2-core VM, twice that under load,
plus its teardown at exit); `to_frames` builds the same columns as DataFrames when a caller asks
for frames. Cells are int, str, float, a stack (tuple of frames, leaf first) or None (missing).
tests/test_columns.py checks that both write byte-identical CSVs over the corpus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.output.frames import _key_columns, _merged
from harness.output.model import MapPrint, Output

if TYPE_CHECKING:
    import pandas as pd

Cell = Any  # int | str | float | tuple[str, ...] | None


@dataclass
class Table:
    """Columns in order, each a list of cells of equal length."""

    data: dict[str, list[Cell]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return len(next(iter(self.data.values()), []))

    def rows(self) -> list[tuple[Cell, ...]]:
        return list(zip(*self.data.values(), strict=True))


def as_columns(table: Table | pd.DataFrame | Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """{column: cells} from a Table, a DataFrame or a plain mapping; missing cells (None, NaN,
    pd.NA) become None, so code over cells serves frames and tables alike."""
    source: Any = table
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a DataFrame
        raw = {str(c): source[c].tolist() for c in source.columns}
    else:
        raw = {str(c): list(v) for c, v in getattr(source, "data", source).items()}
    return {c: [None if _missing(v) else v for v in vals] for c, vals in raw.items()}


def _missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and value != value)
        or type(value).__name__ == "NAType"
    )


def map_table(mp: MapPrint, key_names: Sequence[str] | None = None) -> Table:
    """One printing: key columns, then value / count,average,total / lo,hi,count (as map_frame)."""
    cols, parts = _key_columns(mp, key_names)
    data: dict[str, list[Cell]] = {}
    if mp.kind in ("hist", "lhist"):
        repeat = [len(bs) for bs in mp.values]
        for c, column in zip(cols, parts, strict=True):
            keys = _key_column(column)
            data[c] = [p for p, n in zip(keys, repeat, strict=True) for _ in range(n)]
        buckets = [b for bs in mp.values for b in bs]
        data["lo"] = [b.lo for b in buckets]
        data["hi"] = [b.hi for b in buckets]
        data["count"] = [b.count for b in buckets]
        return Table(data)
    for c, column in zip(cols, parts, strict=True):
        data[c] = _key_column(column)
    if mp.kind == "stats":
        data["count"] = [s.count for s in mp.values]
        data["average"] = [s.average for s in mp.values]
        data["total"] = [s.total for s in mp.values]
    elif mp.kind == "int":
        data["value"] = list(mp.values)
    elif mp.kind == "stack":  # frames as tuples, leaf first, like stack keys
        data["value"] = _key_column(mp.values)
    else:
        data["value"] = [str(v) for v in mp.values]
    return Table(data)


def _key_column(parts: Sequence[Cell]) -> list[Cell]:
    """A column of ints stays ints, one holding a stack stays as is, any other becomes text
    (the rule frames._column applies)."""
    if all(type(p) is int for p in parts) or any(isinstance(p, tuple) for p in parts):
        return list(parts)
    return [str(p) for p in parts]


def printings_table(printings: list[MapPrint], key_names: Sequence[str] | None = None) -> Table:
    """Several printings as one long table led by `printing` and `t_s` (as printings_frame)."""
    merged = _merged(printings)
    table = map_table(merged, key_names)
    if merged.kind in ("hist", "lhist"):
        rows = [sum(len(bs) for bs in p.values) for p in printings]
    else:
        rows = [len(p) for p in printings]
    lead: dict[str, list[Cell]] = {
        "printing": [p.printing for p, n in zip(printings, rows, strict=True) for _ in range(n)],
        "t_s": [p.t_s for p, n in zip(printings, rows, strict=True) for _ in range(n)],
    }
    return Table({**lead, **table.data})


def to_tables(
    output: Output, key_names: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Table]:
    """One table per map name, in order of first printing (as to_frames)."""
    by_name: dict[str, list[MapPrint]] = {}
    for mp in output.maps:
        by_name.setdefault(mp.name, []).append(mp)
    names = key_names or {}
    return {
        name: map_table(ps[0], names.get(name)) if len(ps) == 1
        else printings_table(ps, names.get(name))
        for name, ps in by_name.items()
    }

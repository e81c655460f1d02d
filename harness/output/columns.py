"""Output model -> one table of plain Python columns per map: the one table builder.

Every table the harness shows or writes is built here: key columns (named, stacks kept), then
value / count,average,total / lo,hi,count, and for a map printed more than once `printing` and
`t_s` ahead of them. `harness run` writes its CSVs, folded stacks, flame graphs and summary from
these tables, so a quick run never imports pandas (about 0.8 s of CPU on an idle 2-core VM, twice
that under load, plus its teardown at exit); harness.output.frames turns the same tables into
DataFrames (dtypes only) when a caller asks for frames. Cells are int, str, float, a stack (tuple
of frames, leaf first) or None (missing). tests/test_columns.py checks that both write
byte-identical CSVs over the corpus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.output.model import Key, KeyPart, MapPrint, Output, Stack
from harness.output.stacks import stack_kind, stack_names

if TYPE_CHECKING:
    import pandas as pd

Cell = Any  # int | str | float | tuple[str, ...] | None

# The value columns of each map kind, after its key columns.
VALUE_COLUMNS = {"hist": ("lo", "hi", "count"), "lhist": ("lo", "hi", "count"),
                 "stats": ("count", "average", "total")}


def value_columns(kind: str) -> tuple[str, ...]:
    """The columns after the keys of a map of `kind` (int, str and stack maps: `value`)."""
    return VALUE_COLUMNS.get(kind, ("value",))


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


def all_printings(output: Output, name: str) -> list[MapPrint]:
    """Every printing of one map, in order (print() / interval runs print a map repeatedly)."""
    return [m for m in output.maps if m.name == name]


def by_name(output: Output) -> dict[str, list[MapPrint]]:
    """The printings of each map, maps in order of their first printing."""
    out: dict[str, list[MapPrint]] = {}
    for mp in output.maps:
        out.setdefault(mp.name, []).append(mp)
    return out


# ---------------------------------------------------------------- key columns


def _fit_arity(key: Key, arity: int, sep: str) -> Key:
    """Re-join a key split too finely: a string holding the tuple separator (', ')."""
    extra = len(key) - arity
    if extra <= 0:
        return key
    at = next((i for i, p in enumerate(key) if isinstance(p, str)), 0)
    joined = sep.join(str(p) if not isinstance(p, tuple) else "\n".join(p)
                      for p in key[at:at + extra + 1])
    return (*key[:at], joined, *key[at + extra + 1:])


def _key_columns(mp: MapPrint, names: Sequence[str] | None
                 ) -> tuple[list[str], list[list[KeyPart]]]:
    """Column names and one list of parts per key column."""
    packed = mp.packed_keys
    if packed and (names is None or len(names) == 1) and tuple not in set(
            map(type, packed)):  # one part per key: no tuples to build
        column = _stacks_kept(packed)  # type: ignore[arg-type]
        if names:
            return list(names), [column]
        kind = stack_kind(column) if Stack in set(map(type, packed)) else None
        return stack_names([kind]), [column]
    keys = mp.keys
    arity = len(names) if names is not None else min((len(k) for k in keys), default=0)
    if names is not None and keys and (min(map(len, keys)) < arity
                                       or (arity == 0 and max(map(len, keys)) > 0)):
        raise UsageError(f"key_names gives {mp.name} {arity} column name(s) {list(names)}, "
                         f"but its keys have {min(map(len, keys))} part(s)",
                         f"give {mp.name} one name per part of its key")
    if any(len(k) != arity for k in keys):
        keys = [_fit_arity(k, arity, mp.key_sep) for k in keys]
    columns = [_stacks_kept([k[i] for k in keys]) for i in range(arity)]
    if names is not None:
        return list(names), columns
    return stack_names([stack_kind(c) if _has_stack(c) else None for c in columns]), columns


def _has_stack(column: list[KeyPart]) -> bool:
    return Stack in set(map(type, column))  # one C-level pass (parts are ints, strs, Stacks)


def _stacks_kept(column: list[KeyPart]) -> list[KeyPart]:
    """A column holding stacks: its empty parts ("", how bpftrace prints an empty or failed
    stack) become empty stacks."""
    if "" in column and _has_stack(column):
        return [Stack() if p == "" else p for p in column]
    return column


def _key_column(parts: list[Cell], copy: bool = True) -> list[Cell]:
    """A column of ints stays ints, one holding a stack stays as is, any other becomes text.
    The types are looked at in one C-level pass. `copy`: a new list even when nothing changes
    (a table's lists are its own; frames copy into arrays anyway)."""
    types = set(map(type, parts))
    if types == {int} or any(issubclass(t, tuple) for t in types):
        return list(parts) if copy else parts
    return [str(p) for p in parts]


# ---------------------------------------------------------------- tables


def map_columns(mp: MapPrint, key_names: Sequence[str] | None = None, *, copy: bool = True
                ) -> tuple[list[str], dict[str, list[Cell]]]:
    """One printing: its key column names, and every column's cells (the keys, then
    value_columns(mp.kind)). map_table and frames.map_frame are this. With copy=False a
    column that needs no change may be the printing's own list (read it, never change it)."""
    cols, parts = _key_columns(mp, key_names)
    data: dict[str, list[Cell]] = {}
    if mp.kind in ("hist", "lhist"):
        repeat = [len(bs) for bs in mp.values]
        for c, column in zip(cols, parts, strict=True):
            keys = _key_column(column, copy=False)  # repeated into a new list below
            data[c] = [p for p, n in zip(keys, repeat, strict=True) for _ in range(n)]
        buckets = [b for bs in mp.values for b in bs]
        data["lo"] = [b.lo for b in buckets]
        data["hi"] = [b.hi for b in buckets]
        data["count"] = [b.count for b in buckets]
        return cols, data
    for c, column in zip(cols, parts, strict=True):
        data[c] = _key_column(column, copy)
    if mp.kind == "stats":
        data["count"] = [s.count for s in mp.values]
        data["average"] = [s.average for s in mp.values]
        data["total"] = [s.total for s in mp.values]
    elif mp.kind == "int":
        data["value"] = list(mp.values) if copy else mp.values
    elif mp.kind == "stack":  # frames as tuples, leaf first, like stack keys
        data["value"] = _key_column(mp.values, copy)
    else:
        data["value"] = [str(v) for v in mp.values]
    return cols, data


def map_table(mp: MapPrint, key_names: Sequence[str] | None = None) -> Table:
    """One printing: key columns, then value / count,average,total / lo,hi,count."""
    return Table(map_columns(mp, key_names)[1])


def merged(printings: list[MapPrint]) -> MapPrint:
    """Every printing of one map as one MapPrint (keys and values end to end), so the long
    table is built once rather than joined from a table per printing."""
    first = printings[0]
    kinds = {p.kind for p in printings if len(p)} or {first.kind}
    if kinds == {"hist", "lhist"}:  # a printing whose buckets all look log2
        kinds = {"lhist"}
    kind = kinds.pop() if len(kinds) == 1 else "str" if kinds <= {"int", "str"} else ""
    if kind == "":
        from harness.output.parse import ParseError

        raise ParseError(f"map {first.name} changes value kind between printings "
                         f"({', '.join(sorted({p.kind for p in printings}))})",
                         "print maps of one kind per name")
    out = MapPrint(first.name, 0, kind, key_sep=first.key_sep)
    for p in printings:
        out.packed_keys.extend(p.packed_keys)
        out.values.extend(p.values)
    return out


def printing_rows(printings: list[MapPrint], kind: str) -> list[int]:
    """The rows each printing adds to the long table (a hist entry: one per bucket)."""
    if kind in ("hist", "lhist"):
        return [sum(len(bs) for bs in p.values) for p in printings]
    return [len(p) for p in printings]


def printings_table(printings: list[MapPrint], key_names: Sequence[str] | None = None) -> Table:
    """Several printings as one long table led by `printing` and `t_s` (None: not known)."""
    whole = merged(printings)
    table = map_table(whole, key_names)
    rows = printing_rows(printings, whole.kind)
    lead: dict[str, list[Cell]] = {
        "printing": [p.printing for p, n in zip(printings, rows, strict=True) for _ in range(n)],
        "t_s": [p.t_s for p, n in zip(printings, rows, strict=True) for _ in range(n)],
    }
    return Table({**lead, **table.data})


def check_arguments(output: Any, key_names: Any) -> None:
    """A UsageError naming the parameter (as the rest of the API), not an AttributeError."""
    if not isinstance(output, Output):
        raise UsageError(f"output={repr(output)[:60]} is not an Output",
                         "pass what parse_text or parse_json returned")
    if key_names is not None and not (
            isinstance(key_names, Mapping) and all(
                isinstance(names, Sequence) and not isinstance(names, str)
                and all(isinstance(n, str) for n in names) for names in key_names.values())):
        raise UsageError(f"key_names={repr(key_names)[:60]} is not a mapping of map names to "
                         "column names", "pass e.g. key_names={'@stacks': ['kstack']}")


def to_tables(
    output: Output, key_names: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Table]:
    """One table per map name, in order of first printing; key columns named per `key_names`.

    A map printed once gives map_table's columns; a map printed more than once gives one
    long table over every printing, led by `printing` (1, 2, ... in print order) and `t_s`.
    """
    check_arguments(output, key_names)
    names = key_names or {}
    return {
        name: map_table(ps[0], names.get(name)) if len(ps) == 1
        else printings_table(ps, names.get(name))
        for name, ps in by_name(output).items()
    }

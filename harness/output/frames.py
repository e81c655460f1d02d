"""Output model -> tidy pandas frames, one per map, every printing kept."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.output.model import Key, KeyPart, MapPrint, Output, Stack
from harness.output.stacks import stack_kind, stack_names

if TYPE_CHECKING:
    import pandas as pd


def all_printings(output: Output, name: str) -> list[MapPrint]:
    """Every printing of one map, in order (print() / interval runs print a map repeatedly)."""
    return [m for m in output.maps if m.name == name]


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
        from harness.errors import UsageError

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


def _ints(values: list[Any]) -> Any:
    """int64, as the frames promise; u64 counters past 2**63 (only) fall back to uint64, and
    numbers no 64 bits hold (not bpftrace's: a damaged file) to exact Python ints."""
    import numpy as np

    try:
        return np.asarray(values, dtype="int64")
    except OverflowError:
        with contextlib.suppress(OverflowError):
            if all(v >= 0 for v in values):
                return np.asarray(values, dtype="uint64")
        return np.asarray(values, dtype=object)


def _bounds(values: list[int | None]) -> Any:
    """A hist's lo or hi column: Int64 (open ends missing), exact ints when 64 bits do not
    hold them."""
    import pandas as pd

    try:
        return pd.array(values, dtype="Int64")
    except (OverflowError, TypeError, ValueError):
        return pd.array(values, dtype=object)


def _column(values: list[KeyPart]) -> Any:
    import numpy as np
    import pandas as pd

    types = set(map(type, values))  # one C-level pass, then decide per column
    if types == {int}:
        return _ints(values)
    if any(issubclass(t, tuple) for t in types):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    if types == {str}:
        return pd.array(values, dtype=object)
    return pd.array([str(v) for v in values], dtype=object)


def map_frame(mp: MapPrint, key_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One printing -> frame: key columns then value / count,average,total / lo,hi,count."""
    import pandas as pd

    cols, columns = _key_columns(mp, key_names)
    data: dict[str, Any] = {}
    if mp.kind in ("hist", "lhist"):
        repeat = [len(bs) for bs in mp.values]
        buckets = [b for bs in mp.values for b in bs]
        for c, parts in zip(cols, columns, strict=True):
            data[c] = _column([p for p, n in zip(parts, repeat, strict=True) for _ in range(n)])
        data["lo"] = _bounds([b.lo for b in buckets])
        data["hi"] = _bounds([b.hi for b in buckets])
        data["count"] = _ints([b.count for b in buckets])
        return pd.DataFrame(data, columns=[*cols, "lo", "hi", "count"])
    for c, parts in zip(cols, columns, strict=True):
        data[c] = _column(parts)
    if mp.kind == "stats":
        data["count"] = _ints([s.count for s in mp.values])
        data["average"] = _ints([s.average for s in mp.values])
        data["total"] = _ints([s.total for s in mp.values])
        return pd.DataFrame(data, columns=[*cols, "count", "average", "total"])
    if mp.kind == "int":
        data["value"] = _ints(mp.values)
    elif mp.kind == "stack":  # frames as tuples, leaf first, like stack keys
        data["value"] = _column(mp.values)
    else:
        data["value"] = pd.array([str(v) for v in mp.values], dtype=object)
    return pd.DataFrame(data, columns=[*cols, "value"])


def _merged(printings: list[MapPrint]) -> MapPrint:
    """Every printing of one map as one MapPrint (keys and values end to end), so the long
    frame is built once rather than concatenated from a frame per printing."""
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
    merged = MapPrint(first.name, 0, kind, key_sep=first.key_sep)
    for p in printings:
        merged.packed_keys.extend(p.packed_keys)
        merged.values.extend(p.values)
    return merged


def printings_frame(printings: list[MapPrint], key_names: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """Several printings of one map -> one long frame: `printing`, `t_s`, then map_frame's
    columns; an empty printing adds no row."""
    import numpy as np

    merged = _merged(printings)
    frame = map_frame(merged, key_names)
    if merged.kind in ("hist", "lhist"):
        rows = [sum(len(bs) for bs in p.values) for p in printings]
    else:
        rows = [len(p) for p in printings]
    frame.insert(0, "printing", np.repeat(
        np.asarray([p.printing for p in printings], dtype="int64"), rows))
    frame.insert(1, "t_s", np.repeat(np.asarray(
        [np.nan if p.t_s is None else p.t_s for p in printings], dtype="float64"), rows))
    return frame


def _check_arguments(output: Any, key_names: Any) -> None:
    """A UsageError naming the parameter (as the rest of the API), not an AttributeError."""
    from harness.errors import UsageError

    if not isinstance(output, Output):
        raise UsageError(f"output={repr(output)[:60]} is not an Output",
                         "pass what parse_text or parse_json returned")
    if key_names is not None and not (
            isinstance(key_names, Mapping) and all(
                isinstance(names, Sequence) and not isinstance(names, str)
                and all(isinstance(n, str) for n in names) for names in key_names.values())):
        raise UsageError(f"key_names={repr(key_names)[:60]} is not a mapping of map names to "
                         "column names", "pass e.g. key_names={'@stacks': ['kstack']}")


def to_frames(output: Output, key_names: Mapping[str, Sequence[str]] | None = None
              ) -> dict[str, pd.DataFrame]:
    """One frame per map name; key columns named per `key_names`.

    A map printed once gives map_frame's columns; a map printed more than once gives one
    long frame over every printing, led by `printing` (1, 2, ... in print order) and `t_s`.
    """
    _check_arguments(output, key_names)
    by_name: dict[str, list[MapPrint]] = {}
    for mp in output.maps:
        by_name.setdefault(mp.name, []).append(mp)
    names = key_names or {}
    return {name: (map_frame(ps[0], names.get(name)) if len(ps) == 1
                   else printings_frame(ps, names.get(name)))
            for name, ps in by_name.items()}

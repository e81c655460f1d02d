"""Output model -> tidy pandas frames, one per map, every printing kept.

The tables come from harness.output.columns (the one table builder); this module only gives
their columns the frames' dtypes: ints as int64 (uint64 or exact ints past it), hist bounds
as Int64 with open ends missing, stacks as tuples, text as objects, `t_s` as float64 (NaN:
not known).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.output.columns import (
    all_printings,
    by_name,
    check_arguments,
    map_columns,
    merged,
    printing_rows,
    value_columns,
)
from harness.output.model import MapPrint, Output

__all__ = ["all_printings", "map_frame", "printings_frame", "to_frames"]


def _ints(values: list[Any]) -> Any:
    """int64, as the frames promise; u64 counters past 2**63 (only) fall back to uint64, and
    numbers no 64 bits hold (not bpftrace's: a damaged file) to exact Python ints."""
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
    try:
        return pd.array(values, dtype="Int64")
    except (OverflowError, TypeError, ValueError):
        return pd.array(values, dtype=object)


def _column(values: list[Any]) -> Any:
    """A key column (or a stack value column) as the table built it: ints, stacks, or text."""
    types = set(map(type, values))  # one C-level pass, then decide per column
    if types == {int}:
        return _ints(values)
    if any(issubclass(t, tuple) for t in types):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    return pd.array(values, dtype=object)


def _text(values: list[Any]) -> Any:
    return pd.array(values, dtype=object)


# How each value column of a map kind is typed (key columns: _column).
_VALUE_TYPES = {"lo": _bounds, "hi": _bounds, "count": _ints, "average": _ints, "total": _ints}
_VALUE_OF_KIND = {"int": _ints, "stack": _column}


def map_frame(mp: MapPrint, key_names: Sequence[str] | None = None) -> pd.DataFrame:
    """One printing -> frame: key columns then value / count,average,total / lo,hi,count."""
    cols, cells = map_columns(mp, key_names, copy=False)  # copied into arrays below
    values = value_columns(mp.kind)
    data: dict[str, Any] = {c: _column(cells[c]) for c in cols}
    for c in values:
        typed = _VALUE_TYPES[c] if c != "value" else _VALUE_OF_KIND.get(mp.kind, _text)
        data[c] = typed(cells[c])
    return pd.DataFrame(data, columns=[*cols, *values])


def printings_frame(printings: list[MapPrint], key_names: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """Several printings of one map -> one long frame: `printing`, `t_s`, then map_frame's
    columns; an empty printing adds no row."""
    whole = merged(printings)
    frame = map_frame(whole, key_names)
    rows = printing_rows(printings, whole.kind)
    frame.insert(0, "printing", np.repeat(
        np.asarray([p.printing for p in printings], dtype="int64"), rows))
    frame.insert(1, "t_s", np.repeat(np.asarray(
        [np.nan if p.t_s is None else p.t_s for p in printings], dtype="float64"), rows))
    return frame


def to_frames(output: Output, key_names: Mapping[str, Sequence[str]] | None = None
              ) -> dict[str, pd.DataFrame]:
    """One frame per map name; key columns named per `key_names` (as to_tables).

    A map printed once gives map_frame's columns; a map printed more than once gives one
    long frame over every printing, led by `printing` (1, 2, ... in print order) and `t_s`.
    """
    check_arguments(output, key_names)
    names = key_names or {}
    return {name: (map_frame(ps[0], names.get(name)) if len(ps) == 1
                   else printings_frame(ps, names.get(name)))
            for name, ps in by_name(output).items()}

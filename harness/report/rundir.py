"""Run directories: one CSV per map (stacks folded root first) plus run.json (meta)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.paths import results_root

if TYPE_CHECKING:
    import pandas as pd

    from harness.output.columns import Table



def new_run_dir(kind: str) -> Path:
    """Make and return results/<kind>-<UTC timestamp>/ (suffixed if it already exists)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    root = results_root()
    path = root / f"{kind}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{kind}-{stamp}-{n}"
    path.mkdir(parents=True)
    return path


def csv_name(map_name: str) -> str:
    """`@name` -> `name.csv`; the bare `@` -> `at.csv`."""
    bare = map_name.lstrip("@")
    return f"{bare or 'at'}.csv"


def fold_stack(frames: tuple[str, ...]) -> str:
    """Leaf-first frames -> 'root;...;leaf' (the flame-graph folded convention)."""
    return ";".join(reversed(frames))


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, tuple)).any():
            out[col] = out[col].map(lambda v: fold_stack(v) if isinstance(v, tuple) else v)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


def write_run_dir(run_dir: Path, frames: Mapping[str, pd.DataFrame],
                  meta: Mapping[str, Any]) -> Path:
    """Write `<map>.csv` per frame and `run.json`; returns run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        _csv_ready(frame).to_csv(run_dir / csv_name(name), index=False)
    _write_meta(run_dir, meta)
    return run_dir


def _write_meta(run_dir: Path, meta: Mapping[str, Any]) -> None:
    (run_dir / "run.json").write_text(
        json.dumps(dict(meta), indent=2, default=_jsonable, sort_keys=True) + "\n")


def write_tables(run_dir: Path, tables: Mapping[str, Table], meta: Mapping[str, Any]) -> Path:
    """write_run_dir for plain tables (harness.output.columns): the same CSV bytes, no pandas."""
    import csv

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        with (run_dir / csv_name(name)).open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(table.columns)
            writer.writerows(
                [fold_stack(c) if isinstance(c, tuple) else c for c in row] for row in table.rows()
            )
    _write_meta(run_dir, meta)
    return run_dir

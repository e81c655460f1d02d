"""Run directories: one CSV per map (stacks folded root first), run.json (meta), and bpftrace's
raw stdout.txt / stderr.txt, so any run can be re-parsed.

Where a run will be written is settled BEFORE tracing (`claim_run_dir`): an unwritable place, a
file, or someone else's directory is a one-line error while nothing is lost yet. If writing still
fails afterwards, the run goes to a temporary directory that the error names.
"""

from __future__ import annotations

import csv
import errno
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.paths import results_root
from harness.report.record import RunRecord, write_record

if TYPE_CHECKING:
    import pandas as pd

    from harness.output.columns import Table


class ResultsNotWritable(HarnessError):
    """The results location cannot take this run."""



def new_run_dir(kind: str) -> Path:
    """Make and return results/<kind>-<UTC timestamp>/ (suffixed if it already exists)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    root = results_root()
    path = root / f"{kind}-{stamp}"
    n = 1
    try:
        while path.exists():
            n += 1
            path = root / f"{kind}-{stamp}-{n}"
        path.mkdir(parents=True)
    except OSError as err:
        raise _unusable(
            f"cannot create a run directory under {root}", err,
            "set KTRACE_RESULTS to a writable directory, or pass --out DIR",
        ) from None
    return path


def run_target(path: Path) -> str | None:
    """The target a harness run directory was made for (run.json's target, or a crosscheck's
    catalog entry), or None when `path` is not a harness run."""
    for meta in (path / "run.json", path / "bpftrace" / "run.json", path / "fleet.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            target = data.get("target") or data.get("catalog")
            return str(target) if target else None
    return None


def claim_run_dir(out: Path | None, kind: str, target: str, *, force: bool = False) -> Path:
    """Settle (and create) the run directory before anything is traced.

    None: a new results/<kind>-<time>/. An existing empty directory, or an earlier harness run
    of the same target, is (re)used: the earlier run's files are removed so two runs never mix.
    A non-empty directory holding anything else is refused unless `force`.
    """
    if out is None:
        return new_run_dir(kind)
    out = Path(out)
    try:
        is_file = out.exists() and not out.is_dir()
        holds = out.is_dir() and any(out.iterdir())
    except OSError as err:
        raise _unusable(f"--out {out}", err, "pass a directory path you can write") from None
    if is_file:
        raise ResultsNotWritable(
            f"--out {out} is a file, not a directory", "pass a directory path (new or empty)"
        )
    if holds:
        earlier = run_target(out)
        if earlier != target and not force:
            what = f"a harness run of '{earlier}'" if earlier else "files of no harness run"
            raise ResultsNotWritable(
                f"--out {out} is not empty: it holds {what}",
                "choose a new directory, or pass --force to replace its contents",
            )
        _empty(out)
    check_writable(out, "pass a writable --out DIR (or set KTRACE_RESULTS)")
    return out


def check_writable(path: Path, fix: str) -> None:
    """Create `path` (a directory) if needed and prove a file can be written in it."""
    try:
        if path.exists() and not path.is_dir():
            raise ResultsNotWritable(f"{path} is a file, not a directory", fix)
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ktrace-write-test"):
            pass
    except OSError as err:
        raise _unusable(f"cannot write to {path}", err, fix) from None


def _unusable(what: str, err: OSError, fix: str) -> ResultsNotWritable:
    """The one-line error for a results path the system refuses; a name too long for the file
    system gets its own fix (a path is checked name by name against NAME_MAX)."""
    if err.errno == errno.ENAMETOOLONG:
        fix = "shorten it: each name in a path must fit in 255 bytes"
    return ResultsNotWritable(f"{what}: {err.strerror or err}", fix)


def _empty(path: Path) -> None:
    """Remove a directory's contents (an earlier run being replaced); never a home or a root."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved in (Path("/"), Path.home().resolve()) or resolved in (cwd, *cwd.parents):
        raise ResultsNotWritable(
            f"refusing to empty {path}: it is / , your home, or holds the current directory",
            "choose a dedicated results directory",
        )
    try:
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    except OSError as err:
        raise ResultsNotWritable(
            f"cannot replace the contents of {path}: {err.strerror or err}",
            "remove it by hand or choose another --out",
        ) from None


def csv_name(map_name: str) -> str:
    """`@name` -> `name.csv`; the bare `@` -> `at.csv`."""
    bare = map_name.lstrip("@")
    return f"{bare or 'at'}.csv"


def map_of(stem: str) -> str:
    """A run file's stem -> its map, csv_name's inverse: `name` -> `@name`, `at` -> `@`."""
    return "@" if stem == "at" else f"@{stem}"


def fold_stack(frames: tuple[str, ...]) -> str:
    """Leaf-first frames -> 'root;...;leaf' (the flame-graph folded convention)."""
    return ";".join(reversed(frames))


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object and out[col].map(lambda v: isinstance(v, tuple)).any():
            out[col] = out[col].map(lambda v: fold_stack(v) if isinstance(v, tuple) else v)
    return out


def write_raw(run_dir: Path, stdout: str | None, stderr: str | None) -> None:
    """bpftrace's raw streams, first: everything else in a run directory derives from them."""
    if stdout is not None:
        (run_dir / "stdout.txt").write_text(stdout)
    if stderr is not None:
        (run_dir / "stderr.txt").write_text(stderr)


def write_workload_output(run_dir: Path, extra: Mapping[str, Any]) -> Path:
    """The workload's own stdout and stderr as the runner kept them (bounded, a line where
    bytes were cut): `workload.stdout.txt`, `workload.stderr.txt`. Nothing without a workload."""
    for stream in ("stdout", "stderr"):
        text = extra.get(f"workload_{stream}")
        if text is not None:
            (run_dir / f"workload.{stream}.txt").write_text(text)
    return run_dir


def write_run_dir(run_dir: Path, frames: Mapping[str, pd.DataFrame],
                  meta: RunRecord | Mapping[str, Any], *, stdout: str | None = None,
                  stderr: str | None = None) -> Path:
    """Write `<map>.csv` per frame, `run.json`, and the raw `stdout.txt`/`stderr.txt` when
    given; returns run_dir."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_raw(run_dir, stdout, stderr)
    for name, frame in frames.items():
        _csv_ready(frame).to_csv(run_dir / csv_name(name), index=False)
    write_record(run_dir, meta)
    return run_dir


def rewrite_meta(run_dir: Path, meta: RunRecord | Mapping[str, Any]) -> None:
    """Write run.json again (a check made after the files were written adds its findings)."""
    write_record(run_dir, meta)


def write_tables(run_dir: Path, tables: Mapping[str, Table],
                 meta: RunRecord | Mapping[str, Any], *, stdout: str | None = None,
                 stderr: str | None = None) -> Path:
    """write_run_dir for plain tables (harness.output.columns): the same CSV bytes, no pandas."""

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_raw(run_dir, stdout, stderr)
    write_csvs(run_dir, tables)
    write_record(run_dir, meta)
    return run_dir


def write_csvs(run_dir: Path, tables: Mapping[str, Table]) -> None:
    """`<map>.csv` per table (stacks folded root first), as every run directory holds them."""
    for name, table in tables.items():
        with (run_dir / csv_name(name)).open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(table.columns)
            writer.writerows(
                [fold_stack(c) if isinstance(c, tuple) else c for c in row] for row in table.rows()
            )


def written_or_kept(write: Callable[[Path], Path], run_dir: Path
                    ) -> tuple[Path, HarnessError | None]:
    """`write(run_dir)`, and if that fails (disk full, directory removed mid-run), `write` into a
    new temporary directory instead: returns where the run is and the error that names both."""
    try:
        return write(run_dir), None
    except OSError as err:
        kept = write(Path(tempfile.mkdtemp(prefix="ktrace-run-")))
        return kept, ResultsNotWritable(
            f"could not write the run to {run_dir}: {err.strerror or err}",
            f"it is kept in {kept}; move it where you want it",
        )

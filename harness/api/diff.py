"""`diff`: a differential flame graph and per-stack table of one stack map in two runs (`harness
diff`): run directories, stack CSVs or .folded files."""

from __future__ import annotations

from pathlib import Path

from harness import arguments
from harness.report.flamediff import Diff, DiffError, write_diff

__all__ = ["Diff", "diff"]


def diff(
    run_a: Path | str,
    run_b: Path | str,
    *,
    out: Path | str | None = None,
    map_name: str | None = None,
    keep_offsets: bool = False,
) -> Diff:
    """Compare one stack map of `run_a` (the baseline) and `run_b` (frame widths come from B);
    write `<map>.diff.html`, `.diff.csv` and `.diff.folded` into `out` (None: results/diff-<UTC
    time>/). `map_name` picks the map in a run directory (default: its only stack map);
    `keep_offsets` compares frames with their +offset instead of by function name.
    `Diff.rows` holds every stack's counts and change, `.differences` what the runs' printed
    totals say against their files, `.files` what was written."""
    a = arguments.path("run_a", run_a, "'results/run-A'")
    b = arguments.path("run_b", run_b, "'results/run-B'")
    into = None if out is None else arguments.path("out", out, "'/tmp/diff'")
    arguments.flag("keep_offsets", keep_offsets)
    if map_name is not None:
        arguments.string("map_name", map_name, "'@stacks'")
        if not map_name.strip():
            raise DiffError("--map names no map", "pass a stack map such as --map @stacks")
        if a.is_file() and b.is_file():
            raise DiffError(
                f"--map {map_name} chooses a map in a run directory, but both inputs are files "
                "(one map each)", "drop --map, or pass run directories",
            )
    return write_diff(a, b, into, map_name=map_name, keep_offsets=keep_offsets)

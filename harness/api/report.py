"""`write_report`: folded stacks, flame graphs, plots and summary.md for a run directory, or for any
folder of CSVs into a directory of its own (`harness report`).

A directory the harness made for one run (run.json, verdict.json or matrix.csv) is the
harness's to rewrite; any other folder (results/bench, CSVs someone wrote) is only read, and
its report goes to `out`.
"""

from __future__ import annotations

from pathlib import Path

from harness import arguments
from harness.report import summary
from harness.report.summary import ReportError, is_run_dir


def write_report(run_dir: Path | str, *, out: Path | str | None = None) -> list[Path]:
    """Write the report of `run_dir` into `out` (default: `run_dir` itself, when it is a run
    directory) and return the files written. A folder that is not a run's needs `out`, and
    `out` must not be that folder: its own files are never rewritten."""
    where = arguments.path("run_dir", run_dir, "'results/run-20260101T000000Z'")
    into = None if out is None else arguments.path("out", out, "'/tmp/report'")
    if where.is_dir() and not is_run_dir(where):
        if into is None:
            raise ReportError(
                f"{where} is not a run directory (no run.json, verdict.json or matrix.csv), "
                "so its summary.md and plots are left as they are",
                f"pass --out DIR to write the report elsewhere (e.g. /tmp/{where.name}-report)",
            )
        if into.resolve() == where.resolve():
            raise ReportError(
                f"--out {into} is {where} itself, which is not a run directory",
                "name a new directory for the report",
            )
    return summary.write_report(where, out=into)

"""What one trace gives back (Trace) and how it is written: its run directory, its report, and
the check that every file holds what bpftrace printed.

The run directory is written from plain tables (harness.output.columns), so no pandas is
imported unless a caller reads `Trace.frames`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.report.rundir import rewrite_meta, write_tables, write_workload_output, written_or_kept

if TYPE_CHECKING:
    import pandas as pd

    from harness.host.runner import RunResult
    from harness.output.columns import Table
    from harness.output.model import Output
    from harness.report.record import RunMeta


@dataclass
class Trace:
    """One traced run: a frame per map, the parsed output, its run.json, its run directory.

    `error` is the typed error that cut the run short (None when it ended normally); what was
    gathered before it is still in `frames` and `output`. `notes` are non-fatal remarks (a report
    that could not be written). `columns` are the spec's maps and their columns: a map bpftrace
    never printed (it saw no event) still gets an empty frame and table with those columns.
    """

    output: Output | None
    meta: RunMeta
    path: Path | None
    error: HarnessError | None = None
    notes: list[str] = field(default_factory=list)
    key_names: Mapping[str, Sequence[str]] = field(default_factory=dict)
    workload_stderr: str = ""  # the last of it names a failing workload's cause
    columns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    _frames: dict[str, pd.DataFrame] | None = field(default=None, repr=False)
    _tables: dict[str, Table] | None = field(default=None, repr=False)

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """A DataFrame per map, built on first use: pandas is imported only when asked for."""
        if self._frames is None:
            import pandas as pd

            from harness.output.frames import to_frames

            out = self.output
            self._frames = to_frames(out, self.key_names) if out is not None else {}
            for name in self._missing(self._frames):
                self._frames[name] = pd.DataFrame(columns=list(self.columns[name]))
        return self._frames

    @property
    def tables(self) -> dict[str, Table]:
        """The same maps as plain-Python columns (harness.output.columns), no pandas."""
        from harness.output.columns import Table, to_tables

        if self._tables is None:
            out = self.output
            self._tables = to_tables(out, self.key_names) if out is not None else {}
            for name in self._missing(self._tables):
                self._tables[name] = Table({c: [] for c in self.columns[name]})
        return self._tables

    def _missing(self, have: Mapping[str, object]) -> list[str]:
        """The spec's maps bpftrace did not print (none when nothing was parsed at all)."""
        return [n for n in self.columns if n not in have] if self.output is not None else []

    def check(self) -> Trace:
        """Raise the run's error, or a workload's non-zero exit, as a typed error; else self."""
        if self.error is not None:
            raise self.error
        status = self.meta.workload_status
        if status not in (0, None):
            where = f"partial results are in {self.path}" if self.path else "see trace.frames"
            said = self.workload_stderr.strip().splitlines()[-1:]
            raise HarnessError(
                f"the workload exited with status {status}"
                + (f" ({said[0].strip()[:200]})" if said else ""),
                f"run it by hand; {where}",
            )
        return self



def finish(
    result: RunResult,
    key_names: Mapping[str, Sequence[str]],
    meta: RunMeta,
    path: Path | None,
    report: bool,
    plots: bool = False,
    columns: Mapping[str, Sequence[str]] | None = None,
) -> Trace:
    """The Trace; its run directory (and report) unless path is None, written from plain
    tables so that no pandas is imported unless a caller reads `Trace.frames`.

    If the directory cannot be written after all, the run is kept in a temporary directory and
    the error naming it becomes the Trace's error (after the run's own, if any)."""
    done = Trace(result.output, meta, None, result.error, key_names=key_names,
                 columns=columns or {}, workload_stderr=result.extra.get("workload_stderr", ""))
    if result.output is not None:
        meta.no_events = [n for n, t in done.tables.items() if n in done.columns and not len(t)]
    if path is None:
        return done
    def write(where: Path) -> Path:
        write_tables(where, done.tables, meta, stdout=result.stdout,
                     stderr=result.stderr)
        return write_workload_output(where, result.extra)

    done.path, write_error = written_or_kept(write, path)
    if write_error is not None:
        if done.error is None:
            done.error = write_error
        else:
            done.notes.append(str(write_error))
    if report:
        try:
            from harness.report.summary import write_report

            write_report(done.path, plots=plots)
        except (ImportError, HarnessError) as err:
            done.notes.append(f"report not written: {err}")
    check_printed(done, meta)
    return done


def check_printed(done: Trace, meta: RunMeta) -> None:
    """The invariant of issue 18 on this run: every map's table, CSV, .folded file and flame
    page hold the entries and totals bpftrace printed. Differences go to run.json
    (`printed_differences`) and to the notes the CLI prints on stderr."""
    if done.path is None or not meta.printed:
        return
    from harness.report.totals import checked_run_dir

    meta.printed_differences = checked_run_dir(done.path, meta.printed, done.tables)
    if meta.printed_differences:
        done.notes += [f"not as printed: {line}" for line in meta.printed_differences]
        try:
            rewrite_meta(done.path, meta)
        except OSError as err:
            done.notes.append(f"run.json not updated with the differences: {err}")


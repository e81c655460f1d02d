"""`harness bench NAME --kernels 6.1,6.12,host --bpftrace 0.17,0.27`: a bench per kernel x
release, then one table and one plot of in-kernel ns per event per kernel x release x tracer.

Each cell is the ordinary bench (its CSV, .md and programs under their usual names: a guest's
`<NAME>-vm6.1-bpftrace0.17.0.csv`, the host's `<NAME>-bpftrace0.17.0.csv`), so every figure of the
table can be traced to its rounds. Guests run one at a time: each series boots once for all its
releases and is shut down before the next boots (two TCG guests would share the host's cores). A
cell that fails is a row with its error; the others still run, and the exit status says so. A
stop signal ends the table after the cell it cut short has written its finished runs: that cell's
rows say so, each cell not run is a row saying why, and the stop goes on (exit 128 + N).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError, UsageError

if TYPE_CHECKING:
    from harness.compare.bench_table import Cell
    from harness.lanes.base import Lane


def kernels(text: str | None) -> list[str]:
    """`--kernels 6.1,host` -> ['6.1', 'host']; None (not given) -> the host alone."""
    from harness.lanes.debian import SUITES

    if text is None:
        return ["host"]
    names = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in names if k != "host" and k not in SUITES]
    if unknown or not names:
        raise UsageError(
            f"--kernels: unknown kernel {unknown[0]!r}" if unknown else "--kernels names no kernel",
            f"choose from {', '.join([*SUITES, 'host'])}, e.g. --kernels 6.1,6.12,host",
        )
    return list(dict.fromkeys(names))


def releases(text: str | None) -> list[str | None]:
    """`--bpftrace 0.17,0.27` -> each name resolved now (a root built here, before any guest
    boots); None (not given) -> the system's release."""
    from harness.host.bpftrace_versions import resolve, split_names

    if text is None:
        return [None]
    names = list(dict.fromkeys(split_names(text)))
    for name in names:
        resolve(name)
    return list(names)


def _described(cell: Cell, lane: Lane) -> Cell:
    """The cell with where it ran: the guest's accelerator, what its PMU offers."""
    from harness.host import pmu

    cell.accel = str(lane.describe().get("accel") or "")
    cell.pmu = pmu.state() if cell.series == "host" else pmu.guest_state(cell.accel)
    return cell


def _cell(
    args: argparse.Namespace,
    series: str,
    release: str | None,
    lane: Lane,
    out_dir: Path,
    one: Callable[[argparse.Namespace, Lane, Path], Path],
    cells: list[Cell],
) -> None:
    """One bench of the table into `cells`: its CSV, or the error that stopped it. A stop
    signal in its rounds goes on (StoppedRounds) once its finished runs are written and its
    cell, saying so, is in `cells`."""
    from harness.compare.bench import StoppedRounds
    from harness.compare.bench_table import Cell

    cell_args = argparse.Namespace(**vars(args))
    cell_args.bpftrace, cell_args.kernels = release, None
    cell_args.lane = lane.name
    label = release or "system"
    print(f"== {series} x bpftrace {label}", file=sys.stderr, flush=True)
    cell = Cell(series, label, None)
    try:
        cell.csv = one(cell_args, lane, out_dir)
    except HarnessError as err:
        cell.error = str(err)
        print(f"harness bench: {series} x {label}: error: {err}", file=sys.stderr)
    except StoppedRounds as stop:
        cell.csv, cell.note = stop.csv, stop.said()
        cells.append(_described(cell, lane))
        raise
    cells.append(_described(cell, lane))


def check(args: argparse.Namespace) -> None:
    """The table's own options, before anything runs."""
    if args.kernels is not None and args.lane != "host":
        raise UsageError(
            f"--kernels and --lane {args.lane} both say where to run",
            "drop --lane: --kernels 6.1,host runs each kernel (6.1 in the VM lane)",
        )
    kernels(args.kernels)


def run_table(
    args: argparse.Namespace,
    out_dir: Path,
    one: Callable[[argparse.Namespace, Lane, Path], Path],
    report: Callable[[argparse.Namespace, Path], None],
) -> int:
    from harness.compare.bench import signum_of
    from harness.compare.bench_table import Cell, write
    from harness.lanes.registry import get_lane

    series_list, versions = kernels(args.kernels), releases(args.bpftrace)
    cells: list[Cell] = []
    name = args.label or re.sub(r"[^A-Za-z0-9_.-]+", "_", args.name.split(" ")[0])
    stopped: KeyboardInterrupt | None = None
    try:
        for series in series_list:
            lane = get_lane("host" if series == "host" else f"vm:{series}")
            try:
                for release in versions:
                    _cell(args, series, release, lane, out_dir, one, cells)
            finally:
                if series != "host":
                    lane.close()
    except KeyboardInterrupt as stop:  # in a cell's rounds (its row says so) or between
        stopped = stop
    if stopped is not None:  # the cells not run are rows saying so
        name_of = "Ctrl-C" if signum_of(stopped) == signal.SIGINT else signal.Signals(
            signum_of(stopped)).name
        ran = {(c.series, c.release) for c in cells}
        cells += [Cell(series, r or "system", None, error=f"not run: interrupted by {name_of}")
                  for series in series_list for r in versions
                  if (series, r or "system") not in ran]
        order = [(k, r or "system") for k in series_list for r in versions]
        cells.sort(key=lambda c: order.index((c.series, c.release)))
    csv_path, md_path = write(cells, out_dir / f"{name}-table.csv")
    if stopped is not None:
        for path in (csv_path, md_path):
            print(path)
        print(f"harness bench: the table was interrupted; {csv_path} holds every cell: those "
              "measured, the one cut short and those not run", file=sys.stderr)
        raise stopped
    from harness.report.plots import plot_bench_table

    png = plot_bench_table(
        csv_path, f"{name}: in-kernel ns per event", out_dir / f"{name}-table.png"
    )
    for path in (csv_path, md_path, png):
        print(path)
    print(md_path.read_text())
    report(args, out_dir)
    return 1 if any(c.error for c in cells) else 0

"""`bench`: the untraced workload, the generated bpftrace program, its libbpf twin and the floor
(an empty program on the same attach point), alternating round by round in one run, on one lane
and bpftrace release (`harness bench`). `bench_table`: one bench per kernel x release, then one
table of in-kernel ns per event across them (`harness bench --kernels ... --bpftrace A,B`).

The rounds, figures and statistics are harness.compare.bench's, the workload and tracers of each
target harness.compare.bench_cases'; here are the checks of the options, the lane, the files a
bench writes (results/bench/<NAME>.csv, .programs.csv, .md and the measured programs) and
callbacks for whoever shows progress. Nothing here prints: the CLI does.

    >>> b = harness.bench("syscalls", rounds=3)
    >>> b.csv, b.summary
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api.inputs import ATTACH_CHOICES, lane_name, spec_options
from harness.api.planner import choose
from harness.compare import bench_cases
from harness.compare.bench import (
    BenchResult,
    Rounds,
    Sample,
    StoppedRounds,
    environment,
    signum_of,
    summary_markdown,
    together_pair,
    write_csv,
    write_programs_csv,
)
from harness.compare.bench_table import Cell, write
from harness.errors import HarnessError, UsageError
from harness.host import pmu
from harness.host.bpftrace_versions import resolve
from harness.lanes.debian import SUITES
from harness.lanes.registry import get_lane
from harness.paths import results_root
from harness.progress import Progress, silent
from harness.report.plots import plot_bench_table  # matplotlib loads when it draws
from harness.report.rundir import check_writable
from harness.report.summary import write_report

if TYPE_CHECKING:
    from harness.lanes.base import Lane

__all__ = ["Bench", "BenchOptions", "BenchStart", "BenchTable", "Sample", "StoppedRounds", "bench",
           "bench_table"]

MODES = ("floor", "bpftrace", "libbpf")  # beside the untraced run (harness.compare.bench_cases)


@dataclass(frozen=True)
class BenchOptions:
    """How a bench runs, the same for every cell of a table (`bench`'s keywords).

    rounds: measured rounds at least; max_rounds: at most (None: 3x rounds), added until the
    headline ratio is known to +-precision; warmup: unrecorded rounds first; together: also a
    run with bpftrace and the twin attached at once; kernel_stats: read the kernel's
    per-program clock (bpf_stats); events: per workload run (None: the target's default);
    attach: force the attach type; modes: tracers beside the untraced run; timeout: seconds per
    step; prebuilt: the twin's build directory made elsewhere.
    """

    rounds: int = 5
    max_rounds: int | None = None
    precision: float = 0.02
    warmup: int = 1
    together: bool = True
    kernel_stats: bool = True
    events: int | None = None
    attach: str | None = None
    modes: Sequence[str] = MODES
    timeout: float = 300.0
    prebuilt: Path | None = None

    def rounds_plan(self) -> Rounds:
        """compare.bench's Rounds, after the checks (the CLI's words for a bad value)."""
        arguments.integer("rounds", self.rounds, 1, "5")
        arguments.integer("warmup", self.warmup, 0, "1")
        if self.max_rounds is not None:
            arguments.integer("max_rounds", self.max_rounds, 1, "15")
        if self.events is not None:
            arguments.integer("events", self.events, 1, "50000")
        arguments.choice("attach", self.attach, ATTACH_CHOICES)
        arguments.seconds("timeout", self.timeout, "300")
        arguments.flag("together", self.together)
        arguments.flag("kernel_stats", self.kernel_stats)
        if self.max_rounds is not None and self.max_rounds < self.rounds:
            raise UsageError(
                f"--max-rounds {self.max_rounds} is below --rounds {self.rounds}",
                "pass a --max-rounds of at least --rounds",
            )
        if isinstance(self.precision, bool) or not isinstance(self.precision, int | float) \
                or not 0 < self.precision < 1:
            raise UsageError(f"--precision {self.precision} is not a fraction", "pass e.g. 0.02")
        if isinstance(self.modes, str):
            raise UsageError(f"modes={self.modes!r} is not a list of modes",
                             f"pass e.g. modes={list(MODES)!r}")
        bench_cases.check_modes([m.strip() for m in self.modes if m.strip()])
        max_rounds = 3 * self.rounds if self.max_rounds is None else self.max_rounds
        return Rounds(self.rounds, max_rounds, self.warmup, self.precision, self.kernel_stats,
                      self.timeout, self.together)


@dataclass
class BenchStart:
    """What a bench is about to run, told before its first round."""

    name: str
    description: str  # the workload's
    attach: str
    rounds: Rounds
    modes: list[str]  # `untraced` and each tracer's, in round order
    together: bool  # a run with bpftrace and the twin attached at once, each round
    runs: int  # runs at most: max_rounds x the runs of one round


@dataclass
class Bench:
    """One bench: its rounds (`result.samples`), the files written and the summary.

    name: the files' stem in the bench directory (<TARGET>[-<LABEL>][-bpftrace<VERSION>]).
    csv: a row per round and mode; programs_csv: the kernel's per-program figures (None when
    none were read); md: `summary`, the min/median/max and verdicts; sources: the measured
    programs, each once under `sources/` named by its content (the CSV's `program` column names
    each mode's); report: `harness report`'s files over the bench directory (empty when not asked).
    A bench a stop signal cut short is written (its summary says so) before the stop goes on:
    `bench` then raises StoppedRounds, after `on_written` heard of its files.
    """

    name: str
    result: BenchResult
    csv: Path
    programs_csv: Path | None
    md: Path
    summary: str
    sources: list[Path] = field(default_factory=list)
    report: list[Path] = field(default_factory=list)
    interrupted: str | None = None  # StoppedRounds.said() of a bench a stop signal cut short


@dataclass
class BenchTable:
    """`bench_table`'s cells (one bench each, or its error) and the table written from them:
    <NAME>-table.csv/.md/.png in the bench directory (no plot when a stop signal cut the table
    short: it is written with every cell, those not run saying so, before the stop goes on)."""

    cells: list[Cell]
    csv: Path
    md: Path
    png: Path | None
    report: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Some cell failed (its row holds the error; the others ran)."""
        return any(c.error for c in self.cells)


def bench(
    target: str,
    *,
    lane: str | Lane = "host",
    rounds: int = 5,
    max_rounds: int | None = None,
    precision: float = 0.02,
    warmup: int = 1,
    together: bool = True,
    kernel_stats: bool = True,
    events: int | None = None,
    attach: str | None = None,
    modes: Sequence[str] = MODES,
    timeout: float = 300.0,
    prebuilt: Path | None = None,
    out: Path | str | None = None,
    report: bool = True,
    label: str | None = None,
    bpftrace: str | None = None,
    progress: Progress | None = None,
    on_start: Callable[[BenchStart], None] | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    on_written: Callable[[Bench], None] | None = None,
    **spec_opts: Any,
) -> Bench:
    """Bench `target` on one lane: warm-up rounds, then rounds of the untraced workload and each
    tracer in turn, until the headline ratio is known to +-`precision`.

    target: a benchmark (`ktrace`, `syscalls`) or a probe line shaped by `spec_opts` (as in
        `trace`; its files are named after `label`, else after the probe).
    lane: `host`, `vm:6.1`, `ssh:HOST` or a Lane: the rounds run there, the figures are read here.
    rounds ... prebuilt: as in BenchOptions.
    out: the bench directory (default results/bench); report: also `harness report` over it.
    label: suffix of the files' names (<TARGET>-<LABEL>.csv); a guest's or a remote's figures
        get the lane's name by default. bpftrace: the release to run (the files then end in
        -bpftrace<VERSION>).
    progress: hears the guest's boot and the seconds the rounds have run; on_start: called with
        what is about to run; on_sample: called with each measured run; on_written: called with
        the Bench once its files are written (before StoppedRounds, when a stop cut it short).
    """
    options = BenchOptions(rounds, max_rounds, precision, warmup, together, kernel_stats,
                           events, attach, modes, timeout, prebuilt)
    lane_name(lane)
    for name, value in (("progress", progress), ("on_start", on_start),
                        ("on_sample", on_sample), ("on_written", on_written)):
        arguments.callback(name, value)
    out_dir = _checked(target, options, out, label, bpftrace, spec_opts)
    done = _one(target, get_lane(lane), out_dir, options, label, bpftrace, spec_opts,
                progress or silent, (on_start, on_sample, on_written))
    if report:
        done.report = _report(out_dir)
    return done


def bench_table(
    target: str,
    *,
    kernels: Sequence[str] = ("host",),
    bpftrace: Sequence[str | None] = (None,),
    options: BenchOptions = BenchOptions(),  # frozen: one default shared safely
    out: Path | str | None = None,
    report: bool = True,
    label: str | None = None,
    progress: Progress | None = None,
    on_cell: Callable[[str, str], None] | None = None,
    on_start: Callable[[BenchStart], None] | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    on_written: Callable[[Bench], None] | None = None,
    on_error: Callable[[str, str, HarnessError], None] | None = None,
    on_table: Callable[[BenchTable], None] | None = None,
    **spec_opts: Any,
) -> BenchTable:
    """`bench` per kernel x bpftrace release, then the table of in-kernel ns per event per
    kernel x release x tracer (harness.compare.bench_table) and its plot.

    kernels: VM lane series (`6.1`, `6.12`) and/or `host`; each guest boots once for all its
        releases and is shut down before the next boots (two TCG guests would share the host's
        cores). bpftrace: the releases (None: the system's). A cell that fails is a row with its
        error; the others still run (`BenchTable.failed`).
    on_cell(series, release) is called before each cell, on_error(series, release, error) after
    a cell that failed, on_table(BenchTable) once the table is written; the other arguments are
    `bench`'s, the same for every cell. A stop signal ends the table after the cell it cut short
    has written its finished runs: that cell's row says so, each cell not run is a row saying
    why, the table is written (without its plot) and the stop goes on.
    """
    if not isinstance(options, BenchOptions):
        raise UsageError(f"options={options!r:.60} is not a BenchOptions",
                         "pass e.g. options=harness.BenchOptions(rounds=3)")
    for what, value in (("progress", progress), ("on_cell", on_cell), ("on_start", on_start),
                        ("on_sample", on_sample), ("on_written", on_written),
                        ("on_error", on_error), ("on_table", on_table)):
        arguments.callback(what, value)
    kernels = arguments.names("kernels", kernels, "['6.1', 'host']")
    versions = arguments.names("bpftrace", bpftrace, "['0.17', '0.27']", none_ok=True)
    unknown = [k for k in kernels if k != "host" and k not in SUITES]
    if unknown:
        raise UsageError(f"unknown kernels: {', '.join(unknown)}",
                         f"choose from: {', '.join([*SUITES, 'host'])}")
    out_dir = _checked(target, options, out, label, None, spec_opts)
    for version in versions:  # an unknown name fails now, and a root is built before any boot
        if version is not None:
            resolve(arguments.release(version))
    cells: list[Cell] = []
    name = label or re.sub(r"[^A-Za-z0-9_.-]+", "_", target.split(" ")[0])
    callbacks = (on_start, on_sample, on_written)

    def run_cell(series: str, version: str | None, machine: Lane) -> None:
        """One bench of the table into `cells`: its CSV, or the error that stopped it; a stop
        signal in its rounds goes on once its finished runs and its row are in."""
        shown = version or "system"
        if on_cell is not None:
            on_cell(series, shown)
        cell = Cell(series, shown, None)
        try:
            cell.csv = _one(target, machine, out_dir, options, label, version, spec_opts,
                            progress or silent, callbacks).csv
        except HarnessError as err:
            cell.error = str(err)
            if on_error is not None:
                on_error(series, shown, err)
        except StoppedRounds as stop:
            cell.csv, cell.note = stop.csv, stop.said()
            cells.append(_described(cell, machine))
            raise
        cells.append(_described(cell, machine))

    stopped: KeyboardInterrupt | None = None
    try:
        for series in kernels:
            machine = get_lane("host" if series == "host" else f"vm:{series}")
            try:
                for version in versions:
                    run_cell(series, version, machine)
            finally:
                if series != "host":
                    machine.close()
    except KeyboardInterrupt as stop:  # in a cell's rounds (its row says so) or between cells
        stopped = stop
        cells = _with_cells_not_run(cells, kernels, versions, signum_of(stop))
    csv_path, md_path = write(cells, out_dir / f"{name}-table.csv")
    table = BenchTable(cells, csv_path, md_path, None)
    if stopped is not None:
        if on_table is not None:
            on_table(table)
        raise stopped
    table.png = plot_bench_table(csv_path, f"{name}: in-kernel ns per event",
                                 out_dir / f"{name}-table.png")
    if on_table is not None:
        on_table(table)
    if report:
        table.report = _report(out_dir)
    return table


def _described(cell: Cell, lane: Lane) -> Cell:
    """The cell with where it ran: the guest's accelerator, what its PMU offers."""
    cell.accel = str(lane.describe().get("accel") or "")
    cell.pmu = pmu.state() if cell.series == "host" else pmu.guest_state(cell.accel)
    return cell


def _with_cells_not_run(
    cells: list[Cell], kernels: Sequence[str], versions: Sequence[str | None], signum: int
) -> list[Cell]:
    """The table's cells in kernel x release order, each one a stop signal kept from running a
    row saying so."""
    name_of = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    ran = {(c.series, c.release) for c in cells}
    order = [(k, r or "system") for k in kernels for r in versions]
    cells = cells + [Cell(k, r, None, error=f"not run: interrupted by {name_of}")
                     for k, r in order if (k, r) not in ran]
    return sorted(cells, key=lambda c: order.index((c.series, c.release)))


def _checked(
    target: str, options: BenchOptions, out: Path | str | None, label: str | None,
    bpftrace: str | None, spec_opts: dict[str, Any],
) -> Path:
    """Every check before anything is created or started; the bench directory, writable."""
    arguments.text("target", target, "'syscalls'")
    if label is not None and (not isinstance(label, str)
                              or not re.fullmatch(r"[A-Za-z0-9_.-]+", label)):
        raise UsageError(
            f"--label {label!r} is not a plain file-name suffix (it names "
            "<TARGET>-<LABEL>.csv inside --out)",
            "use letters, digits, '_', '.' and '-' only, e.g. --label getppid-kstack",
        )
    options.rounds_plan()
    arguments.release(bpftrace)
    if ":" not in target and spec_opts:
        raise UsageError(
            f"spec options ({', '.join(sorted(spec_opts))}) do not apply to "
            f"catalog entry {target!r}",
            "give a probe such as tracepoint:syscalls:sys_enter_getppid to shape your own spec",
        )
    if options.prebuilt is not None and not Path(options.prebuilt).is_dir():
        raise UsageError(f"--prebuilt {options.prebuilt} is not a directory",
                         "pass the build directory of a twin made elsewhere, or drop --prebuilt")
    if out is not None:
        arguments.path("out", out, "'results/bench'")
    out_dir = Path(out) if out is not None else results_root() / "bench"
    check_writable(out_dir, "pass a writable --out DIR")  # before minutes of rounds
    return out_dir


def _one(
    target: str, lane: Lane, out_dir: Path, options: BenchOptions, label: str | None,
    bpftrace: str | None, spec_opts: dict[str, Any], progress: Progress,
    callbacks: tuple[Callable[[BenchStart], None] | None, Callable[[Sample], None] | None,
                     Callable[[Bench], None] | None],
) -> Bench:
    """One bench on one lane with one bpftrace release: its CSVs, .md and programs written into
    `out_dir`. Cut short by a stop signal, what finished is written, then StoppedRounds goes on
    (its `csv` naming the file)."""
    on_start, on_sample, on_written = callbacks
    name = target
    on_host = lane.name == "host"
    if not on_host and not label:  # a guest's or a remote's figures get files of their own
        label = re.sub(r"[^A-Za-z0-9_.-]+", "", lane.name)  # vm6.1, sshlab-box
    plan = options.rounds_plan()
    modes = [m.strip() for m in options.modes if m.strip()]
    spec = None
    if ":" in target:
        spec = spec_options(target, spec_opts)
        name = label or re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.probe.text())
        label = None
    if not on_host:  # the boot's phases (fetch, KVM probe, boot)
        lane.capabilities(progress)
    attach, reason = options.attach, "chosen with --attach"
    if spec is None:  # a benchmark: the planner picks its attach type, as it does for a run
        attach, reason = choose(bench_cases.equivalents(name), options.attach, None,
                                lane.capabilities())
    case = bench_cases.build(
        name, options.events, modes, attach, options.prebuilt, bpftrace, spec, reason,
        lane=lane,
    )
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = environment()
    if not on_host:
        env["kernel"] = lane.capabilities().kernel
    if bpftrace:  # the release that ran, and files of their own (<NAME>-bpftrace<V>.*)
        tracer = resolve(bpftrace)
        env["bpftrace_version"] = tracer.version_text
        release = f"bpftrace{tracer.short_version}"
        label = f"{label}-{release}" if label else release
    together = together_pair(case.tracers) if plan.together and plan.kernel_stats else []
    if on_start is not None:
        on_start(BenchStart(
            name, case.workload.description, case.attach, plan,
            ["untraced", *[t.mode for t in case.tracers]], bool(together),
            plan.max_rounds * (1 + len(case.tracers) + len(together)),
        ))
    stopped: StoppedRounds | None = None
    try:  # a guest reports the seconds its rounds have run
        samples = lane.bench(case.workload, case.tracers, plan, on_sample, progress=progress)
    except StoppedRounds as stop:  # what finished is written, then the stop goes on
        stopped, samples = stop, stop.samples
    sources = bench_cases.write_sources(case.sources, out_dir)  # the measured programs, once each
    programs = {mode: str(path.relative_to(out_dir)) for mode, path in sources.items()}
    result = BenchResult(name, case.workload, case.attach, samples, env, started, programs)
    stem = f"{name}-{label}" if label else name
    csv_path = write_csv(result, out_dir / f"{stem}.csv")
    programs_path = write_programs_csv(result, out_dir / f"{stem}.programs.csv")
    md_path = out_dir / f"{stem}.md"
    summary = summary_markdown(
        result, [*bench_cases.notes(case, out_dir),
                 *bench_cases.programs_note(programs, case.sources),
                 f"- cycles and instructions per run: {_pmu(lane)}."],
        interrupted=stopped.said() if stopped else None,
    )
    if not on_host:
        summary = summary.rstrip("\n") + "\n" + _vm_note(lane.describe())
    md_path.write_text(summary)
    done = Bench(stem, result, csv_path, programs_path, md_path, summary, list(sources.values()),
                 interrupted=stopped.said() if stopped else None)
    if on_written is not None:
        on_written(done)
    if stopped is not None:
        stopped.csv = csv_path
        raise stopped
    return done


def _vm_note(lane: dict[str, Any]) -> str:
    """The summary's line on where a VM lane's (or a remote host's) figures come from."""
    if not lane.get("accel"):
        return (f"- Remote lane: kernel {lane.get('release')} on {lane.get('hostname')}"
                f" ({lane.get('name')}); the rounds ran there, the figures were read here.\n")
    return (
        f"- VM lane: guest kernel {lane.get('release')} under {lane.get('accel')}"
        f" (booted in {lane.get('boot_s') or 0:.1f} s). Under TCG every instruction is"
        " emulated: absolute times are not the host's, only the ratios within this table"
        " compare.\n"
    )


def _pmu(lane: Lane) -> str:
    """Whether `bpftool prog profile` could count cycles and instructions where the rounds ran."""
    if lane.name == "host":
        return pmu.state()
    accel = lane.describe().get("accel")
    return pmu.guest_state(str(accel)) if accel else "not probed on a remote host"


def _report(out_dir: Path) -> list[Path]:
    """`harness report` over the bench directory (not in a VM guest, which sets
    KTRACE_NO_REPORT)."""
    if os.environ.get("KTRACE_NO_REPORT"):
        return []
    return write_report(out_dir)

"""`harness run NAME|PROBE`: arguments in, `harness.trace`, tables and the results path out."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.api.again import again
from harness.api.fleet import fleet
from harness.api.planner import with_twin
from harness.api.trace import plan, trace
from harness.cli import hosts
from harness.cli.hosts import add_fleet_arguments
from harness.cli.options import (
    add_bpftrace_argument,
    add_lane_argument,
    at_least,
    duration,
    prepare_bpftrace,
)
from harness.cli.progress import terminal_progress
from harness.errors import UsageError
from harness.spec.options import SpecOptions, add_flags

if TYPE_CHECKING:
    from harness.spec.plan import Plan

EXAMPLES = """examples:
  harness run ktrace                                   # the CO-RE example's probe around 100 sends
  harness run tracepoint:syscalls:sys_enter_getppid --count-by comm,kstack --duration 5s
  harness run tracepoint:net:net_dev_queue --hist args.len --by comm --workload 'ping -c3 ::1'
  harness run 'kprobe:udp_send_skb { @[kstack] = count(); }' --lane vm --workload CMD
  harness run 'tracepoint:raw_syscalls:sys_enter { @c[comm] = count(); }' --duration 2s
  harness run --again results/run-20261127T090622Z       # the same run once more
  harness run ktrace --dry-run                         # the program and its C twin, not run
  harness run profile -F 199 -c 'dd if=/dev/zero of=/dev/null count=1M'   # CPU flame graph
  harness run profile -d 5s                            # every CPU (-p PID: one process)
  harness run offcpu -c 'python3 -m harness.workloads.sleeper'   # off-CPU flame graph (us)
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", nargs="?",
        help="a catalog name (ktrace, syscalls, profile, offcpu), a probe such as "
        "kprobe:udp_send_skb, or a whole bpftrace program",
    )
    parser.add_argument(
        "--again", type=Path, metavar="RUN_DIR",
        help="run a recorded run again from its run.json (same spec or program, workload, "
        "duration, bpftrace and lane) into a new run directory; give no target",
    )
    parser.add_argument("-c", "--cmd", "--workload", dest="workload", metavar="CMD",
                        help="command to trace, started once the probes are live "
                        "(default: the catalog's workload)")
    parser.add_argument("-F", "--frequency", type=at_least(1), metavar="HZ",
                        help="profile's sampling rate (default 99 Hz), as perf's and BCC's -F")
    parser.add_argument("--count", type=at_least(0), default=100,
                        help="datagrams for the UDP workload")
    parser.add_argument("--sizes", default="1,100,1000", help="payload sizes for the UDP workload")
    parser.add_argument("-d", "--duration", type=duration, metavar="TIME",
                        help="stop after TIME (500ms, 5s, 2m; a bare number is seconds)")
    parser.add_argument("--timeout", type=duration, metavar="TIME",
                        help="how long to wait for bpftrace to attach (default: 60s; with "
                        "--again, the recorded run's)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress display on the terminal")
    add_plan_arguments(parser)
    parser.add_argument(
        "--attach", choices=("kprobe", "kfunc", "tracepoint"), help="force the attach type"
    )
    add_lane_argument(parser)
    add_bpftrace_argument(parser)
    parser.add_argument("--top", type=at_least(0), default=10,
                        help="rows shown per map (the table says how many it leaves out)")
    parser.add_argument("--out", type=Path, help="results directory (default results/<run-id>)")
    parser.add_argument("--plots", action="store_true",
                        help="also draw histogram PNGs (else `harness report DIR` draws them)")
    parser.add_argument(
        "--force", action="store_true",
        help="replace the contents of a non-empty --out that is not a run of this target",
    )
    add_flags(parser)
    add_fleet_arguments(parser)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """-v/--print-program and --dry-run (BCC's -v/--ebpf, bpftrace's --dry-run), for run and
    crosscheck."""
    parser.add_argument("-v", "--print-program", action="store_true",
                        help="print the attach choice, the bpftrace program and the generated C "
                        "twin (where one can be generated) before running")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what -v prints and exit: no bpftrace, no workload, no "
                        "results directory")


def dry_run(args: argparse.Namespace, planner: Callable[..., Plan], target: str) -> int:
    """`--dry-run`: what `planner` (harness.plan or plan_crosscheck) says would run, printed."""
    with terminal_progress(args.quiet) as progress:
        chosen = planner(target, lane=args.lane, progress=progress, **asked(args))
    print_plan(chosen)
    return 0


def print_plan(chosen: Plan) -> None:
    """The attach choice and why, the release, the workload, the program as it runs, and the
    twin's C or why there is none."""
    from harness.spec.codegen import WORKLOAD_PID

    print(f"attach: {chosen.attach} ({chosen.reason})")
    print(f"bpftrace: {chosen.bpftrace}")
    if chosen.workload:
        print(f"workload: {shlex.join(chosen.workload)}")
    if chosen.needs_pid:
        print(f"note: {WORKLOAD_PID} stands for the workload's pid, known once it starts")
    print("--- bpftrace program ---")
    print(chosen.shown(), end="")
    if chosen.twin_c is not None:
        print("--- libbpf CO-RE twin (C) ---")
        print(chosen.twin_c, end="" if chosen.twin_c.endswith("\n") else "\n")
    elif chosen.twin_note:
        print(f"--- no libbpf twin: {chosen.twin_note}")
    print("---", flush=True)


def given_spec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The spec flags the user actually gave, as keywords for `harness.trace`."""
    return SpecOptions.from_namespace(args).given()


def asked(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords `run` and `crosscheck` pass from their flags alike, to plan, trace,
    crosscheck or a fleet of either: what to watch (the workload, its count and sizes, the
    spec flags given) and how (attach type, bpftrace release). The lane is each call's own."""
    return {"workload": args.workload, "attach": args.attach, "count": args.count,
            "sizes": args.sizes, "bpftrace": args.bpftrace, **given_spec_options(args)}


def _while_tracing(
    progress: Callable[..., object], duration: float | None
) -> Callable[[float], None]:
    """The run's progress callback: loads the table code and library once while bpftrace traces
    (60-120 ms after the run otherwise, or before bpftrace starts), then shows progress from
    the first second on."""
    loaded: list[bool] = []

    def tick(elapsed: float) -> None:
        if not loaded:
            loaded.append(True)
            import tabulate  # noqa: F401

            import harness.cli.tables  # noqa: F401
        if elapsed >= 1:
            progress("tracing", elapsed, duration, "s")

    return tick


def print_lane(lane: dict[str, Any]) -> None:
    """One line on where a run happened, for runs off the host."""
    if lane.get("transport") == "ssh" and not lane.get("accel"):
        print(f"lane: {lane['name']} {lane.get('release')} ({lane.get('hostname')}, "
              f"connected in {lane.get('connect_s') or 0:.1f}s)")
    elif lane.get("series") and lane.get("up_since"):
        print(f"lane: {lane['name']} {lane.get('release')} ({lane.get('accel')}, kept up since "
              f"{lane['up_since']}, connected in {lane.get('connect_s') or 0:.1f}s)")
    elif lane.get("name", "host") != "host":
        series = str(lane["name"]).partition(":")[2] or "6.1"
        print(
            f"lane: {lane['name']} {lane.get('release')} ({lane.get('accel')}, "
            f"booted in {lane.get('boot_s') or 0:.1f}s for this run: no guest was up; "
            f"`harness lane up vm:{series}` keeps one up for later runs)"
        )


# What a recorded run fixes: `--again` refuses these (their defaults mean "not given").
RECORDED = {"workload": None, "count": 100, "sizes": "1,100,1000", "duration": None,
            "attach": None, "lane": "host", "bpftrace": None, "frequency": None}


def _again_conflicts(args: argparse.Namespace) -> list[str]:
    """The options given with --again that a recorded run already fixes."""
    given = [f"--{name}" for name, unset in RECORDED.items() if getattr(args, name) != unset]
    given += [f"--{name.replace('_', '-')}" for name in given_spec_options(args)]
    return (["target"] if args.target is not None else []) + given


def run(args: argparse.Namespace) -> int:
    if args.again is not None and _again_conflicts(args):
        raise UsageError(
            f"--again re-runs {args.again} as recorded, so it takes no "
            + " or ".join(_again_conflicts(args)),
            "drop them, or run the target with your options instead",
        )
    if args.again is None and args.target is None:
        raise UsageError("no target", "give a catalog name, a probe or a program, or --again DIR")
    on_fleet = hosts.wanted(args)
    prepare_bpftrace(args)
    if args.workload is not None and not args.workload.strip():
        raise UsageError("--workload is empty", "pass a command, e.g. --workload 'ping -c1 ::1'")
    if args.dry_run and args.again is not None:
        raise UsageError(
            f"--dry-run plans a new run; the program --again would run is in {args.again}/run.json",
            "read it there, or drop --dry-run",
        )
    if on_fleet:
        return _run_fleet(args)
    if args.dry_run:
        return dry_run(args, partial(plan, duration=args.duration, frequency=args.frequency),
                       args.target)
    with terminal_progress(args.quiet) as progress:
        t = again(
            args.again,
            out=args.out,
            timeout=args.timeout,
            report=not os.environ.get("KTRACE_NO_REPORT"),
            plots=args.plots,
            check=False,
            force=args.force,
            on_progress=_while_tracing(progress, None),
            on_plan=(lambda p: print_plan(with_twin(p))) if args.print_program else None,
            progress=progress,
        ) if args.again is not None else trace(
            args.target,
            duration=args.duration,
            lane=args.lane,
            out=args.out,
            timeout=60.0 if args.timeout is None else args.timeout,
            report=not os.environ.get("KTRACE_NO_REPORT"),
            plots=args.plots,
            check=False,
            force=args.force,
            on_progress=_while_tracing(progress, args.duration),
            on_plan=(lambda p: print_plan(with_twin(p))) if args.print_program else None,
            progress=progress,
            frequency=args.frequency,
            **asked(args),
        )
    from harness.cli.tables import counts_line, render, say_warnings

    for note in t.notes:
        print(f"note: {note}", file=sys.stderr)
    if t.output is not None:
        say_warnings("run", t.output.warnings, len(t.output.unparsed))
    print_lane(t.meta.lane)
    print(f"attach: {t.meta.attach} ({t.meta.attach_reason})")
    print(f"bpftrace: {t.meta.bpftrace['version_text']} ({t.meta.bpftrace['origin']})")
    for name, table in t.tables.items():
        print(f"\n{name}  ({len(table)} rows)")
        print(render(table, args.top))
    nothing = not any(len(table) for table in t.tables.values())
    if t.error is None and (nothing or t.meta.no_events):
        which = ", ".join(t.meta.no_events) or "no map"
        print(f"\nno events: {which} got no entry"
              + (" (check the probe, its filters, and that the workload reaches it)"
                 if nothing else ""))
    if t.output is not None:
        print(f"\nyield: {counts_line(t.output.counts())}")
    print(f"\nresults: {t.path}")
    t.check()
    return 0


def _run_fleet(args: argparse.Namespace) -> int:
    """`harness run TARGET --hosts ...`: a line per host as it ends, then per host what ran,
    then each map over the fleet (a `host` column first); exit 0 only when every host ran."""
    from harness.cli.tables import counts_line, render, say_warnings

    with terminal_progress(args.quiet) as progress:
        f = fleet(
            args.target, hosts=hosts.hosts_list(args), inventory=args.inventory,
            jobs=hosts.jobs(args), duration=args.duration, out=args.out,
            timeout=60.0 if args.timeout is None else args.timeout,
            report=not os.environ.get("KTRACE_NO_REPORT"), plots=args.plots,
            force=args.force, progress=progress, on_host=hosts.finished("run"),
            frequency=args.frequency, **asked(args),
        )
    print()
    for r in f.runs:
        t = r.result
        if t is None:
            print(f"{r.label}: failed before tracing")
            continue
        if t.output is not None:
            say_warnings(f"run: {r.label}", t.output.warnings, len(t.output.unparsed))
        meta = t.meta
        print(f"{r.label}: {meta.capabilities.get('kernel')}, attach {meta.attach}, "
              f"{meta.bpftrace['version_text']}, ended by {meta.ended_by}"
              + (f"; yield: {counts_line(t.output.counts())}" if t.output is not None else ""))
    for name, table in f.tables.items():
        print(f"\n{name}  ({len(table)} rows over {len(f.traces)} hosts)")
        print(render(table, args.top))
    print(f"\n{hosts.summary(f.runs, f.path)}")
    return 0 if f.passed else 2

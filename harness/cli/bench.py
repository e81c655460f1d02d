"""`harness bench NAME`: untraced vs generated bpftrace vs libbpf twin, alternating, in one run.

Writes results/bench/<NAME>.csv (a row per round and mode, stamped with kernel, CPU, tool versions,
attach type and git revision), results/bench/<NAME>.md (min/median/max and the goals), then runs
`harness report` over results/bench for the comparison PNGs. Stopped by Ctrl-C or SIGTERM, it
writes the runs that finished (the page says it was interrupted) and exits 128 + N.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.options import (
    add_lane_argument,
    at_least,
    duration,
    prepare_bpftrace,
)
from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.lanes.base import Lane

EXAMPLES = """examples:
  harness bench syscalls                 # getppid() loop: untraced vs bpftrace vs libbpf
  harness bench ktrace --lane vm --events 2000
  harness bench tracepoint:syscalls:sys_enter_getppid --count-by kstack --label getppid-kstack
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.spec.options import add_flags

    parser.add_argument(
        "name", metavar="TARGET",
        help="benchmark: ktrace, syscalls, or a probe with spec options (as for run)",
    )
    parser.add_argument("--rounds", type=at_least(1), default=5,
                        help="measured rounds at least (default 5)")
    parser.add_argument(
        "--max-rounds", type=at_least(1), default=None,
        help="rounds at most: past --rounds, rounds are added until the headline ratio's 95%% "
        "interval is within --precision (default 3x --rounds)",
    )
    parser.add_argument(
        "--precision", type=float, default=0.02,
        help="stop adding rounds once the headline ratio is known to +-this fraction "
        "(default 0.02)",
    )
    parser.add_argument("--warmup", type=at_least(0), default=1,
                        help="unrecorded rounds first (default 1)")
    parser.add_argument(
        "--no-together", action="store_true",
        help="no run with bpftrace and the twin attached at once (the in-kernel ratio then "
        "comes from their separate runs, which repeat less on a busy machine)",
    )
    parser.add_argument(
        "--no-kernel-stats", action="store_true",
        help="do not read the kernel's per-program clock (bpf_stats): end-to-end figures only",
    )
    parser.add_argument("--events", type=at_least(1),
                        help="events per workload run (default: ktrace 50000, syscalls 1e6)")
    parser.add_argument(
        "--attach", choices=("kprobe", "kfunc", "tracepoint"), help="force the attach type"
    )
    parser.add_argument(
        "--modes",
        default="floor,bpftrace,libbpf",
        help="tracers to run beside the untraced run (default floor,bpftrace,libbpf; the floor "
        "is an empty program on the same attach point)",
    )
    parser.add_argument("--out", type=Path, help="output directory (default results/bench)")
    parser.add_argument(
        "--timeout", type=duration, default=300.0, metavar="TIME",
        help="how long each step may take (500ms, 5s, 2m; default 300 s)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the PNG/summary report")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress display on the terminal")
    parser.add_argument("--label", help="suffix for the output files: <NAME>-<LABEL>.csv/.md "
                        "(with --bpftrace, -bpftrace<VERSION> follows it)")
    add_lane_argument(parser)
    parser.add_argument(
        "--kernels", metavar="LIST",
        help="one table across kernels: a comma list of 6.1, 6.12 (VM lane) and host; with a "
        "comma list of --bpftrace releases, a bench per kernel x release, then "
        "<TARGET>-table.csv/.md/.png of in-kernel ns/event per kernel x release x tracer",
    )
    parser.add_argument(
        "--bpftrace", metavar="VERSION",
        help="the bpftrace release to run: system (default), its version (0.17), 0.27 or "
        "latest (a Debian root built on first use; `harness doctor` lists them); a comma list "
        "(0.17,0.27) benches each and writes the table as --kernels does",
    )
    parser.add_argument(
        "--prebuilt", type=Path, help="use this build directory of the libbpf twin (made elsewhere)"
    )
    add_flags(parser)


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
    from harness.host import pmu

    if lane.name == "host":
        return pmu.state()
    accel = lane.describe().get("accel")
    return pmu.guest_state(str(accel)) if accel else "not probed on a remote host"


def _release(args: argparse.Namespace) -> str:
    """`bpftrace0.27.0` for --bpftrace 0.27: each release's files have names of their own."""
    from harness.host.bpftrace_versions import resolve

    return f"bpftrace{resolve(args.bpftrace).short_version}"


def _report(args: argparse.Namespace, out_dir: Path) -> None:
    """`harness report` over the bench directory, unless asked not to (the VM guest is)."""
    if args.no_report or os.environ.get("KTRACE_NO_REPORT"):
        return
    from harness.report.summary import write_report

    for path in write_report(out_dir):
        print(path)


def _check(args: argparse.Namespace) -> None:
    """The options' own checks, before anything is created or started."""
    from harness.cli.run import given_spec_options

    if args.label is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.label):
        raise UsageError(
            f"--label {args.label!r} is not a plain file-name suffix (it names "
            "<TARGET>-<LABEL>.csv inside --out)",
            "use letters, digits, '_', '.' and '-' only, e.g. --label getppid-kstack",
        )
    if args.max_rounds is not None and args.max_rounds < args.rounds:
        raise UsageError(
            f"--max-rounds {args.max_rounds} is below --rounds {args.rounds}",
            "pass a --max-rounds of at least --rounds",
        )
    if not 0 < args.precision < 1:
        raise UsageError(f"--precision {args.precision} is not a fraction", "pass e.g. 0.02")
    from harness.compare.bench_cases import check_modes

    check_modes([m.strip() for m in args.modes.split(",") if m.strip()])
    from harness.cli.bench_table import check

    check(args)
    if ":" not in args.name and given_spec_options(args):
        raise UsageError(
            f"spec options ({', '.join(sorted(given_spec_options(args)))}) do not apply to "
            f"catalog entry {args.name!r}",
            "give a probe such as tracepoint:syscalls:sys_enter_getppid to shape your own spec",
        )
    if args.prebuilt is not None and not args.prebuilt.is_dir():
        raise UsageError(f"--prebuilt {args.prebuilt} is not a directory",
                         "pass the build directory of a twin made elsewhere, or drop --prebuilt")


def run(args: argparse.Namespace) -> int:
    from harness.compare import bench_cases
    from harness.report.rundir import check_writable

    _check(args)
    out_dir = args.out or bench_cases.results_root() / "bench"
    check_writable(out_dir, "pass a writable --out DIR")  # before minutes of rounds
    if args.kernels is not None or (args.bpftrace and "," in args.bpftrace):
        from harness.cli.bench_table import run_table

        return run_table(args, out_dir, _one, _report)
    prepare_bpftrace(args)
    from harness.lanes.registry import get_lane

    _one(args, get_lane(args.lane), out_dir)
    _report(args, out_dir)
    return 0


def _one(args: argparse.Namespace, lane: Lane, out_dir: Path) -> Path:
    """One bench on one lane with one bpftrace release: its CSV, .md and programs written into
    `out_dir`; returns the CSV's path."""
    from harness.compare import bench, bench_cases

    on_host = lane.name == "host"
    if not on_host and not args.label:  # a guest's or a remote's figures get files of their own
        args.label = re.sub(r"[^A-Za-z0-9_.-]+", "", lane.name)  # vm6.1, sshlab-box

    max_rounds = 3 * args.rounds if args.max_rounds is None else args.max_rounds
    plan = bench.Rounds(
        args.rounds, max_rounds, args.warmup, args.precision, not args.no_kernel_stats,
        args.timeout, not args.no_together,
    )
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    spec = None
    if ":" in args.name:
        from harness.api.inputs import spec_options
        from harness.cli.run import given_spec_options

        spec = spec_options(args.name, given_spec_options(args))
        args.name = args.label or re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.probe.text())
        args.label = None
    from harness.cli.progress import terminal_progress
    from harness.progress import silent

    if not on_host:  # the boot's phases (fetch, KVM probe, boot) on the terminal
        with terminal_progress(args.quiet) as booting:
            lane.progress = booting
            try:
                lane.capabilities()
            finally:
                lane.progress = silent
    case = bench_cases.build(
        args.name, args.events, modes, args.attach, args.prebuilt, args.bpftrace, spec, lane
    )
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = bench.environment()
    if not on_host:
        env["kernel"] = lane.capabilities().kernel
    if args.bpftrace:  # the release that ran, and files of their own (<NAME>-bpftrace<V>.*)
        from harness.host.bpftrace_versions import resolve

        env["bpftrace_version"] = resolve(args.bpftrace).version_text
        release = _release(args)
        args.label = f"{args.label}-{release}" if args.label else release
    together = bench.together_pair(case.tracers) if plan.together and plan.kernel_stats else []
    print(
        f"bench {args.name}: {case.workload.description}, attach {case.attach}, "
        f"{args.rounds} to {max_rounds} rounds x {['untraced', *[t.mode for t in case.tracers]]}"
        + (" + both attached together" if together else ""),
        file=sys.stderr,
    )

    per_round = 1 + len(case.tracers) + len(together)
    total = max_rounds * per_round
    done = [0]

    def progress(s: bench.Sample) -> None:
        done[0] += 1
        bar(f"bench {args.name}: round {s.round + 1} ({args.rounds} to {max_rounds})", done[0],
            total, "runs")
        extra = (
            ""
            if s.overhead_ns_per_event is None
            else (
                f" overhead {s.overhead_ns_per_event:.1f} ns/event,"
                f" attached in {s.attach_ms:.0f} ms, counted {s.events_counted}"
            )
        )
        kernel = s.kernel_ns_per_event
        extra += "" if kernel is None else f", in the kernel {kernel:.1f} ns/event"
        print(
            f"  round {s.round} {s.mode:9s} {s.ns_per_event:9.1f} ns/event{extra}", file=sys.stderr
        )

    stopped: bench.StoppedRounds | None = None
    with terminal_progress(args.quiet) as bar:
        bar(f"bench {args.name}: {args.warmup} warm-up round(s)")
        lane.progress = bar  # a guest reports the seconds its rounds have run
        try:
            samples = lane.bench(case.workload, case.tracers, plan, progress)
        except bench.StoppedRounds as stop:  # what finished is written, then the stop goes on
            stopped, samples = stop, stop.samples
        finally:
            lane.progress = silent
    result = bench.BenchResult(args.name, case.workload, case.attach, samples, env, started)
    stem = f"{args.name}-{args.label}" if args.label else args.name
    csv_path = bench.write_csv(result, out_dir / f"{stem}.csv")
    programs_path = bench.write_programs_csv(result, out_dir / f"{stem}.programs.csv")
    md_path = out_dir / f"{stem}.md"
    summary = bench.summary_markdown(
        result, [*bench_cases.notes(case, out_dir), f"- cycles and instructions per run: "
                 f"{_pmu(lane)}."], interrupted=stopped.said() if stopped else None,
    )
    if not on_host:
        summary = summary.rstrip("\n") + "\n" + _vm_note(lane.describe())
    md_path.write_text(summary)
    for suffix, text in case.sources.items():  # the measured programs, beside their figures
        (out_dir / f"{stem}{suffix}").write_text(text)
        print(out_dir / f"{stem}{suffix}")
    print(csv_path)
    if programs_path is not None:
        print(programs_path)
    print(md_path)
    print(md_path.read_text())
    if stopped is not None:
        print(f"harness bench: {stopped.said()}: the runs that finished are in {csv_path}",
              file=sys.stderr)
        stopped.csv = csv_path
        raise stopped
    return csv_path

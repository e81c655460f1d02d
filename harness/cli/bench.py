"""`harness bench NAME`: untraced vs generated bpftrace vs libbpf twin, alternating, in one run.

Writes results/bench/<NAME>.csv (a row per round and mode, stamped with kernel, CPU, tool versions,
attach type and git revision), results/bench/<NAME>.md (min/median/max and the goals), then runs
`harness report` over results/bench for the comparison PNGs. Stopped by Ctrl-C or SIGTERM, it
writes the runs that finished (the page says it was interrupted) and exits 128 + N. The bench is
harness.bench (and harness.bench_table for --kernels); this module parses the flags and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.api.bench import BenchOptions, BenchTable, bench, bench_table
from harness.cli import options
from harness.cli.bench_table import check, kernels, releases
from harness.cli.progress import terminal_progress
from harness.cli.run import given_spec_options
from harness.errors import HarnessError
from harness.progress import Progress, silent
from harness.spec.options import add_flags

if TYPE_CHECKING:
    from harness.api.bench import Bench, BenchStart, Sample

EXAMPLES = """examples:
  harness bench syscalls                 # getppid() loop: untraced vs bpftrace vs libbpf
  harness bench ktrace --lane vm --events 2000
  harness bench tracepoint:syscalls:sys_enter_getppid --count-by kstack --label getppid-kstack
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", metavar="TARGET",
        help="benchmark: ktrace, syscalls, or a probe with spec options (as for run)",
    )
    parser.add_argument("--rounds", type=options.at_least(1), default=5,
                        help="measured rounds at least (default 5)")
    parser.add_argument(
        "--max-rounds", type=options.at_least(1), default=None,
        help="rounds at most: past --rounds, rounds are added until the headline ratio's 95%% "
        "interval is within --precision (default 3x --rounds)",
    )
    parser.add_argument(
        "--precision", type=float, default=0.02,
        help="stop adding rounds once the headline ratio is known to +-this fraction "
        "(default 0.02)",
    )
    parser.add_argument("--warmup", type=options.at_least(0), default=1,
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
    parser.add_argument("--events", type=options.at_least(1),
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
        "--timeout", type=options.duration, default=300.0, metavar="TIME",
        help="how long each step may take (500ms, 5s, 2m; default 300 s)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the PNG/summary report")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress display on the terminal")
    parser.add_argument("--label", help="suffix for the output files: <NAME>-<LABEL>.csv/.md "
                        "(with --bpftrace, -bpftrace<VERSION> follows it)")
    options.add_lane_argument(parser)
    parser.add_argument(
        "--kernels", metavar="LIST",
        help="one table across kernels: a comma list of 6.1, 6.12 (VM lane) and host; with a "
        "comma list of --bpftrace releases, a bench per kernel x release, then "
        "<TARGET>-table.csv/.md/.png of in-kernel ns/event per kernel x release x tracer",
    )
    options.add_bpftrace_argument(
        parser, options.RELEASE_HELP + "; a comma list (0.17,0.27) benches each and writes the "
        "table as --kernels does",
    )
    parser.add_argument(
        "--prebuilt", type=Path, help="use this build directory of the libbpf twin (made elsewhere)"
    )
    add_flags(parser)


def _bench_options(args: argparse.Namespace) -> BenchOptions:
    """The flags as the library's BenchOptions."""
    return BenchOptions(
        args.rounds, args.max_rounds, args.precision, args.warmup, not args.no_together,
        not args.no_kernel_stats, args.events, args.attach,
        [m.strip() for m in args.modes.split(",") if m.strip()], args.timeout, args.prebuilt,
    )


def run(args: argparse.Namespace) -> int:
    check(args)
    if args.kernels is not None or (args.bpftrace and "," in args.bpftrace):
        return _table(args, _bench_options(args), Shown())
    options.prepare_bpftrace(args)
    shown = Shown()
    with terminal_progress(args.quiet) as bar:
        shown.bar = bar
        done = bench(
            args.name, lane=args.lane, out=args.out, report=not args.no_report,
            label=args.label, bpftrace=args.bpftrace, progress=bar, on_start=shown.start,
            on_sample=shown.sample, on_written=shown.written, **vars(_bench_options(args)),
            **given_spec_options(args),
        )
    for path in done.report:
        print(path)
    return 0


class Shown:
    """What a bench shows while it runs: its plan on stderr, a bar and a line per measured run,
    then the files it wrote and its summary on stdout."""

    def __init__(self) -> None:
        self.bar: Progress = silent
        self.name = ""
        self.total = 0
        self.done = 0
        self.rounds = (0, 0)

    def start(self, s: BenchStart) -> None:
        self.name, self.total, self.done = s.name, s.runs, 0
        self.rounds = (s.rounds.rounds, s.rounds.max_rounds)
        print(
            f"bench {s.name}: {s.description}, attach {s.attach}, "
            f"{s.rounds.rounds} to {s.rounds.max_rounds} rounds x {s.modes}"
            + (" + both attached together" if s.together else ""),
            file=sys.stderr,
        )
        self.bar(f"bench {s.name}: {s.rounds.warmup} warm-up round(s)")

    def sample(self, s: Sample) -> None:
        self.done += 1
        low, high = self.rounds
        self.bar(f"bench {self.name}: round {s.round + 1} ({low} to {high})", self.done,
                 self.total, "runs")
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

    @staticmethod
    def written(done: Bench) -> None:
        for path in done.sources:
            print(path)
        print(done.csv)
        if done.programs_csv is not None:
            print(done.programs_csv)
        print(done.md)
        print(done.summary)
        if done.interrupted:
            print(f"harness bench: {done.interrupted}: the runs that finished are in {done.csv}",
                  file=sys.stderr)


def _table(args: argparse.Namespace, options: BenchOptions, shown: Shown) -> int:
    """harness.bench_table over the flags; each cell shown as a bench is, then the table."""
    def cell(series: str, release: str) -> None:
        print(f"== {series} x bpftrace {release}", file=sys.stderr, flush=True)

    def failed(series: str, release: str, err: HarnessError) -> None:
        print(f"harness bench: {series} x {release}: error: {err}", file=sys.stderr)

    written: list[BenchTable] = []

    def tabled(table: BenchTable) -> None:
        written.append(table)
        for path in (table.csv, table.md, table.png):
            if path is not None:
                print(path)

    series_list, versions = kernels(args.kernels), releases(args.bpftrace)
    try:
        with terminal_progress(args.quiet) as bar:
            shown.bar = bar
            table = bench_table(
                args.name, kernels=series_list, bpftrace=versions, options=options,
                out=args.out, report=not args.no_report, label=args.label, progress=bar,
                on_cell=cell, on_start=shown.start, on_sample=shown.sample,
                on_written=shown.written, on_error=failed, on_table=tabled,
                **given_spec_options(args),
            )
    except KeyboardInterrupt:
        if written:
            print(f"harness bench: the table was interrupted; {written[0].csv} holds every cell: "
                  "those measured, the one cut short and those not run", file=sys.stderr)
        raise
    print(table.md.read_text())
    for path in table.report:
        print(path)
    return 1 if table.failed else 0

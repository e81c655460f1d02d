"""`harness crosscheck NAME`: bpftrace and the libbpf CO-RE twin on the same events, compared."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.api.crosscheck import crosscheck, plan_crosscheck
from harness.api.fleet import FLEET_CROSSCHECK_COLUMNS, fleet_crosscheck
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
from harness.cli.run import add_plan_arguments, asked, dry_run, print_lane, print_plan
from harness.errors import UsageError
from harness.spec.options import add_flags

EXAMPLES = """examples:
  harness crosscheck ktrace              # bpftrace and the libbpf CO-RE twin on the same sends
  harness crosscheck ktrace --lane vm    # the same with the real kprobe in a Debian 6.1 guest
  harness crosscheck tracepoint:syscalls:sys_enter_getppid --count-by comm --hist args.__syscall_nr
  harness crosscheck ktrace --dry-run    # both programs, bpftrace's and the twin's C; nothing runs
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        metavar="TARGET",
        help="a catalog entry (ktrace, syscalls) or a probe with spec options, as for run",
    )
    parser.add_argument(
        "-c", "--cmd", "--workload", dest="workload", metavar="CMD",
        help="for a probe: the command both tracers watch (default: getppid() calls for "
        "syscall tracepoints and uprobes, UDP sends otherwise)",
    )
    parser.add_argument(
        "--attach", choices=("kprobe", "kfunc", "tracepoint"), help="force the attach type"
    )
    parser.add_argument("--count", type=at_least(0), default=200,
                        help="datagrams the workload sends")
    parser.add_argument("--sizes", default="1,100,1000,1400", help="payload sizes, cycled")
    parser.add_argument("--timeout", type=duration, default=60.0, metavar="TIME",
                        help="how long to wait to attach and to finish (500ms, 5s, 2m)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress display on the terminal")
    add_plan_arguments(parser)
    parser.add_argument("--out", type=Path, help="results directory (default results/<run-id>)")
    parser.add_argument(
        "--force", action="store_true",
        help="replace the contents of a non-empty --out that is not a run of this target",
    )
    parser.add_argument(
        "--prebuilt", type=Path, help="use this build directory of the twin (VM lane)"
    )
    add_lane_argument(parser)
    add_flags(parser)
    add_bpftrace_argument(parser)
    parser.add_argument(
        "--libbpf-pid-offset",
        type=int,
        default=0,
        help="point the twin at another pid (proves a mismatch is caught)",
    )
    add_fleet_arguments(parser)


def run(args: argparse.Namespace) -> int:
    on_fleet = hosts.wanted(args)
    prepare_bpftrace(args)
    if on_fleet:
        return _crosscheck_fleet(args)
    if args.dry_run:
        return dry_run(args, plan_crosscheck, args.name)
    with terminal_progress(args.quiet) as progress:
        x = crosscheck(
            args.name,
            lane=args.lane,
            libbpf_pid_offset=args.libbpf_pid_offset,
            timeout=args.timeout,
            prebuilt=args.prebuilt,
            out=args.out,
            force=args.force,
            progress=progress,
            on_plan=print_plan if args.print_program else None,
            **asked(args),
        )
    print_lane(x.meta.lane)
    print(f"attach: {x.attach} ({x.reason}); .bpf.o sha256 {x.bpf_obj_sha256[:16]}")
    print(f"bpftrace: {x.meta.bpftrace} ({x.meta.bpftrace_origin})")
    print(f"{'map':<9} {'compared':<36} {'bpftrace':>10} {'libbpf':>10}  verdict")
    for name, v in x.maps.items():
        bt = _total(x.bpftrace.get(name))
        lb = _total(x.libbpf.get(name))
        what = v.what if len(v.what) <= 36 else v.what[:33] + "..."
        print(f"{name:<9} {what:<36} {bt:>10} {lb:>10}  {'equal' if v.equal else 'DIFFER'}")
        for key, left, right in v.diff.head(20).itertuples(index=False):
            print(f"    {str(key)[:90]:<90} bpftrace={left} libbpf={right}")
    for line in x.meta.printed_differences:
        print(f"warning: not as printed: bpftrace/{line}", file=sys.stderr)
    print(f"{'PASS' if x.passed else 'FAIL'}: results in {x.path}")
    return 0 if x.passed else 1


def _total(frame: object) -> int:
    """Events a frame accounts for (sum of its value or count column)."""
    import pandas as pd

    if frame is None:
        return 0  # the tracer printed no such map: no events
    assert isinstance(frame, pd.DataFrame)
    col = "value" if "value" in frame.columns else "count"
    return int(frame[col].sum())


def _crosscheck_fleet(args: argparse.Namespace) -> int:
    """`harness crosscheck TARGET --hosts ...`: a row per host, like `matrix` for kernels, and
    whether every host of one attach type ran the very same .bpf.o."""
    if args.libbpf_pid_offset:
        raise UsageError("--libbpf-pid-offset proves a mismatch on one lane, not on a fleet",
                         "use it with --lane ssh:HOST")
    with terminal_progress(args.quiet) as progress:
        f = fleet_crosscheck(
            args.name, hosts=hosts.hosts_list(args), inventory=args.inventory,
            jobs=hosts.jobs(args), timeout=args.timeout, out=args.out, prebuilt=args.prebuilt,
            force=args.force, progress=progress, on_host=hosts.finished("crosscheck"),
            **asked(args),
        )
    shown = [c for c in FLEET_CROSSCHECK_COLUMNS if c not in ("lane", "bpf_obj_sha256", "error")]
    rows = [{**r, "core_relocations": r["core_relocations"] or "-"} for r in f.rows]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in shown}
    print()
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in shown))
    objects = ", ".join(
        f"{attach} {' '.join(sorted(s[:12] for s in shas))} "
        f"({', '.join(str(r['host']) for r in f.rows if r['attach'] == attach)})"
        for attach, shas in sorted(f.objects().items())
    )
    print(f"one .bpf.o per attach type: {'yes' if f.one_object_per_attach else 'NO'}"
          f"{': ' + objects if objects else ''}")
    print(f"{'PASS' if f.passed else 'FAIL'}: {hosts.summary(f.runs, f.path)}")
    return 0 if f.passed else 1

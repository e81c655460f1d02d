"""`harness run NAME|PROBE`: arguments in, `harness.trace`, tables and the results path out."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UsageError

EXAMPLES = """examples:
  harness run ktrace                                   # the CO-RE example's probe around 100 sends
  harness run tracepoint:syscalls:sys_enter_getppid --count-by comm,kstack --duration 5s
  harness run tracepoint:net:net_dev_queue --hist args.len --by comm --workload 'ping -c3 ::1'
  harness run 'kprobe:udp_send_skb { @[kstack] = count(); }' --lane vm --workload CMD
  harness run 'tracepoint:raw_syscalls:sys_enter { @c[comm] = count(); }' --duration 2s
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.spec.cmdline import add_spec_arguments

    parser.add_argument(
        "target",
        help="a catalog name (ktrace, syscalls), a probe such as kprobe:udp_send_skb, "
        "or a whole bpftrace program",
    )
    parser.add_argument("--workload", help="command to trace (default: the catalog's workload)")
    parser.add_argument("--count", type=int, default=100, help="datagrams for the UDP workload")
    parser.add_argument("--sizes", default="1,100,1000", help="payload sizes for the UDP workload")
    parser.add_argument("--duration", type=float, help="stop after S seconds")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for attach")
    parser.add_argument(
        "--attach", choices=("kprobe", "kfunc", "tracepoint"), help="force the attach type"
    )
    parser.add_argument("--lane", default="host", help="host (default) or vm[:VERSION]")
    parser.add_argument("--top", type=int, default=10, help="rows shown per map")
    parser.add_argument("--out", type=Path, help="results directory (default results/<run-id>)")
    parser.add_argument("--plots", action="store_true",
                        help="also draw histogram PNGs (else `harness report DIR` draws them)")
    add_spec_arguments(parser)


def _progress() -> Callable[[float], None]:
    """A once-a-second 'running... Ns' line on a terminal, after the first two seconds."""
    last = [0.0]

    def show(elapsed: float) -> None:
        if elapsed >= 2 and elapsed - last[0] >= 1 and sys.stderr.isatty():
            last[0] = elapsed
            print(f"\rrunning... {elapsed:4.0f}s", end="", file=sys.stderr, flush=True)

    return show


def given_spec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The spec flags the user actually gave, as keywords for `harness.trace`."""
    from harness.spec.cmdline import add_spec_arguments

    defaults = argparse.ArgumentParser(add_help=False)
    add_spec_arguments(defaults)
    return {
        name: getattr(args, name)
        for name, default in vars(defaults.parse_args([])).items()
        if getattr(args, name, default) != default
    }


def run(args: argparse.Namespace) -> int:
    if args.lane != "host":
        from harness.lanes.vm import run_in_vm

        return run_in_vm(args.lane, "run", args.argv[1:], args.out)
    from harness.api import trace

    if args.workload is not None and not args.workload.strip():
        raise UsageError("--workload is empty", "pass a command, e.g. --workload 'ping -c1 ::1'")
    t = trace(
        args.target,
        workload=args.workload,
        duration=args.duration,
        attach=args.attach,
        out=args.out,
        count=args.count,
        sizes=args.sizes,
        timeout=args.timeout,
        report=not os.environ.get("KTRACE_NO_REPORT"),  # the VM lane reports on the host
        plots=args.plots,
        check=False,
        on_progress=_progress(),
        **given_spec_options(args),
    )
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    for note in t.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"attach: {t.meta.attach} ({t.meta.attach_reason})")
    from harness.cli.tables import render

    for name, table in t.tables.items():
        print(f"\n{name}  ({len(table)} rows)")
        print(render(table, args.top))
    print(f"\nresults: {t.path}")
    t.check()
    return 0

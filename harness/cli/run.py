"""`harness run NAME|PROBE`: spec -> bpftrace program -> run around a workload -> tables and CSV."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessError, UsageError

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
    add_spec_arguments(parser)


def _workload_argv(args: argparse.Namespace) -> list[str] | None:
    if not args.workload:
        return None
    argv = shlex.split(args.workload)
    if not argv:
        raise UsageError("--workload is empty", "pass a command, e.g. --workload 'ping -c1 ::1'")
    return argv


def _progress() -> Callable[[float], None]:
    """A once-a-second 'running... Ns' line on a terminal, after the first two seconds."""
    last = [0.0]

    def show(elapsed: float) -> None:
        if elapsed >= 2 and elapsed - last[0] >= 1 and sys.stderr.isatty():
            last[0] = elapsed
            print(f"\rrunning... {elapsed:4.0f}s", end="", file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    if args.lane != "host":
        from harness.lanes.vm import run_in_vm

        return run_in_vm(args.lane, "run", args.argv[1:], args.out)
    from harness.host.capabilities import capabilities, choose_attach
    from harness.host.runner import run_bpftrace
    from harness.spec import catalog, codegen
    from harness.spec.cmdline import spec_from_args

    caps = capabilities()
    if "{" in args.target:
        return _run_program(args, caps)
    if ":" in args.target:
        spec = spec_from_args(args.target, args)
        equivalents = {spec.attach_type: spec}
        workload = _workload_argv(args)
    else:
        entry = catalog.get(args.target)
        equivalents = dict(entry.equivalents)
        workload = _workload_argv(args) or entry.workload_argv(args.count, args.sizes)
    if args.attach:
        if args.attach not in equivalents:
            raise UsageError(
                f"'{args.target}' has no {args.attach} form",
                f"choose one of: {', '.join(equivalents)}",
            )
        attach, reason = args.attach, "chosen with --attach"
    else:
        attach, reason = choose_attach(equivalents, caps)
    spec = equivalents[attach]
    marker = f"KTRACE_READY_{int(time.time() * 1000)}"
    version = codegen.bpftrace_version()
    programs: list[str] = []

    symbol = codegen.probe_symbol(spec)

    def program_for(pid: int | None) -> str:
        programs.append(codegen.generate(spec, attach, version, marker, pid=pid, symbol=symbol))
        return programs[-1]

    if workload is None and args.duration is None:
        raise UsageError("nothing bounds this run", "pass --workload CMD or --duration S")
    started = time.time()
    _warm_imports()
    result = run_bpftrace(
        program_for,
        marker,
        workload=workload,
        duration=args.duration,
        timeout=args.timeout,
        on_progress=_progress(),
    )
    if sys.stderr.isatty():
        print("\r", end="", file=sys.stderr)
    meta = {"spec": repr(spec), "attach": attach, "attach_reason": reason}
    return _report(args, spec.key_names(), meta, caps, programs, workload, result, started)


def _warm_imports() -> None:
    """Import the parser, its grammar and pandas while bpftrace compiles and attaches.

    bpftrace spends a few hundred ms before its probes are live; the harness would otherwise pay
    for these imports after the run, in series.
    """
    import threading

    def load() -> None:
        from harness.output.frames import to_frames  # noqa: F401  (pulls in pandas)
        from harness.output.parse import parse_text

        parse_text("")  # compiles and caches the grammar

    threading.Thread(target=load, daemon=True).start()


def _run_program(args: argparse.Namespace, caps: object) -> int:
    """A literal bpftrace program (the seed's one-liners): run as given, plus a BEGIN marker."""
    from harness.host.runner import run_bpftrace
    from harness.spec.literal import calls_exit, with_ready_marker

    workload = _workload_argv(args)
    if workload is None and args.duration is None and not calls_exit(args.target):
        raise UsageError("nothing bounds this run",
                         "pass --workload CMD or --duration S, or end the program with exit()")
    marker = f"KTRACE_READY_{int(time.time() * 1000)}"
    program = with_ready_marker(args.target, marker)
    started = time.time()
    _warm_imports()
    result = run_bpftrace(
        program, marker, workload=workload, duration=args.duration, timeout=args.timeout
    )
    meta = {"spec": None, "attach": "as written", "attach_reason": "literal program"}
    return _report(args, {}, meta, caps, [program], workload, result, started)


def _report(
    args: argparse.Namespace,
    key_names: Mapping[str, Sequence[str]],
    run_meta: Mapping[str, object],
    caps: object,
    programs: list[str],
    workload: list[str] | None,
    result: object,
    started: float,
) -> int:
    """Print each map's top rows, write results/<run-id>/, and say where; keep partial output."""
    from harness.host.capabilities import Capabilities
    from harness.host.runner import RunResult
    from harness.output.frames import to_frames
    from harness.report.rundir import new_run_dir, write_run_dir

    assert isinstance(result, RunResult) and isinstance(caps, Capabilities)
    frames = to_frames(result.output, key_names) if result.output is not None else {}
    out = args.out or new_run_dir("run")
    meta = {
        "command": " ".join(sys.argv),
        "target": args.target,
        "program": programs[-1] if programs else None,
        **run_meta,
        "capabilities": caps.as_dict(),
        "workload": workload,
        "workload_status": result.workload_status,
        "probes": result.probes,
        "time_to_attached_s": result.time_to_attached,
        "started": started,
        "stopped": time.time(),
        "exit_status": result.exit_status,
        "interrupted": result.interrupted,
        "error": str(result.error) if result.error else None,
        "printed_lines": result.output.lines if result.output is not None else [],
        "diagnostics": result.diagnostics,
    }
    write_run_dir(out, frames, meta)
    if not os.environ.get("KTRACE_NO_REPORT"):  # the VM lane reports on the host instead
        try:
            from harness.report.summary import write_report

            write_report(out)
        except (ImportError, HarnessError) as err:
            print(f"note: report not written: {err}", file=sys.stderr)
    print(f"attach: {run_meta['attach']} ({run_meta['attach_reason']})")
    for name, frame in frames.items():
        print(f"\n{name}  ({len(frame)} rows)")
        print(_table(frame, args.top))
    print(f"\nresults: {out}")
    if result.error is not None:
        raise result.error
    if result.workload_status not in (0, None):
        raise HarnessError(
            f"the workload exited with status {result.workload_status}",
            f"run it by hand; partial results are in {out}",
        )
    return 0


def _table(frame: object, top: int) -> str:
    """The largest rows first; a stack key is shown as bpftrace shows it, one frame a line."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    shown = frame
    if "lo" in shown.columns:
        nonzero = shown[shown["count"] > 0]
        return (nonzero if len(nonzero) else shown).to_string(index=False)
    if "value" in shown.columns:
        shown = shown.sort_values("value", ascending=False)
    shown = shown.head(top)
    stack_cols = [c for c in shown.columns if shown[c].map(lambda v: isinstance(v, tuple)).any()]
    if not stack_cols:
        return shown.to_string(index=False)
    blocks = []
    for _, row in shown.iterrows():
        flat = [f"{c}={row[c]}" for c in shown.columns if c not in stack_cols]
        lines = [", ".join(flat)]
        for c in stack_cols:
            lines += [f"    {f}" for f in row[c]]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)

"""`harness crosscheck NAME`: bpftrace and the libbpf CO-RE twin on the same events, compared."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """examples:
  harness crosscheck ktrace              # bpftrace and the libbpf CO-RE twin on the same sends
  harness crosscheck ktrace --lane vm    # the same with the real kprobe in a Debian 6.1 guest
"""

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="catalog entry with a libbpf twin (ktrace)")
    parser.add_argument(
        "--attach", choices=("kprobe", "kfunc", "tracepoint"), help="force the attach type"
    )
    parser.add_argument("--count", type=int, default=200, help="datagrams the workload sends")
    parser.add_argument("--sizes", default="1,100,1000,1400", help="payload sizes, cycled")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to attach/finish")
    parser.add_argument("--out", type=Path, help="results directory (default results/<run-id>)")
    parser.add_argument(
        "--prebuilt", type=Path, help="use this build directory of the twin (VM lane)"
    )
    parser.add_argument("--lane", default="host", help="host (default) or vm[:VERSION]")
    parser.add_argument(
        "--libbpf-pid-offset",
        type=int,
        default=0,
        help="point the twin at another pid (proves a mismatch is caught)",
    )


def run(args: argparse.Namespace) -> int:
    if args.lane != "host":
        from harness.lanes.vm import run_in_vm

        return run_in_vm(args.lane, "crosscheck", args.argv[1:], args.out)
    from harness.compare.crosscheck import run_crosscheck
    from harness.report.rundir import new_run_dir, write_run_dir

    result = run_crosscheck(
        args.name,
        attach=args.attach,
        count=args.count,
        sizes=args.sizes,
        libbpf_pid_offset=args.libbpf_pid_offset,
        timeout=args.timeout,
        prebuilt=args.prebuilt,
    )
    out = args.out or new_run_dir("crosscheck")
    write_run_dir(out / "bpftrace", result.bpftrace_frames, result.meta)
    write_run_dir(out / "libbpf", result.libbpf_frames, result.meta)
    verdict = {
        "passed": result.passed,
        "kernel": result.meta["kernel"],
        "core_relocations": result.meta["core_relocations"],
        "attach": result.attach,
        "reason": result.reason,
        "bpf_obj_sha256": result.build.sha256,
        "maps": [
            {"map": c.map_name, "what": c.what, "equal": c.equal, "diff": c.diff}
            for c in result.comparisons
        ],
    }
    (out / "verdict.json").write_text(json.dumps(verdict, indent=2) + "\n")

    print(f"attach: {result.attach} ({result.reason}); .bpf.o sha256 {result.build.sha256[:16]}")
    print(f"{'map':<9} {'compared':<28} {'bpftrace':>10} {'libbpf':>10}  verdict")
    for c in result.comparisons:
        bt = _total(result.bpftrace_frames[c.map_name])
        lb = _total(result.libbpf_frames[c.map_name])
        print(f"{c.map_name:<9} {c.what:<28} {bt:>10} {lb:>10}  {'equal' if c.equal else 'DIFFER'}")
        for key, left, right in c.diff[:20]:
            print(f"    {key[:90]:<90} bpftrace={left} libbpf={right}")
    print(f"{'PASS' if result.passed else 'FAIL'}: results in {out}")
    return 0 if result.passed else 1


def _total(frame: object) -> int:
    """Events a frame accounts for (sum of its value or count column)."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    col = "value" if "value" in frame.columns else "count"
    return int(frame[col].sum())

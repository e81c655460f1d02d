#!/usr/bin/env python3
"""`harness run` end to end against bare bpftrace running the same program, side by side.

Both trace the same short workload (getppid() calls of one process) with the same program; bare
bpftrace starts it with `-c`, the harness with its gated workload, parses the maps and writes
its results directory. Rounds alternate (bare, harness, bare, ...) so the ratio holds on a noisy
machine. Writes results/bench/run_overhead.csv (one row per run plus a summary row).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROGRAM = "tracepoint:syscalls:sys_enter_getppid /pid == PID/ { @[comm] = count(); }"


def loop_binary() -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "harness/workloads/syscall_loop.py"), "--build-only"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def bare(binary: str, calls: int) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["bpftrace", "-e", PROGRAM.replace("PID", "cpid"), "-c", f"{binary} --count {calls}"],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - t0


def harness(binary: str, calls: int, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "harness"),
            "run",
            "tracepoint:syscalls:sys_enter_getppid",
            "--count-by",
            "comm",
            "--workload-pid",
            "--workload",
            f"{binary} --count {calls}",
            "--out",
            str(out),
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "KTRACE_NO_REPORT": "1"},
    )
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--csv", type=Path, default=REPO / "results/bench/run_overhead.csv")
    args = ap.parse_args()
    binary = loop_binary()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bare(binary, args.calls)  # warm caches: first bpftrace start pays for BTF loading
        for i in range(args.rounds):
            rows.append({"round": i + 1, "tool": "bpftrace", "seconds": bare(binary, args.calls)})
            secs = harness(binary, args.calls, Path(tmp) / f"r{i}")
            rows.append({"round": i + 1, "tool": "harness", "seconds": secs})
    med = {
        t: statistics.median(r["seconds"] for r in rows if r["tool"] == t)
        for t in ("bpftrace", "harness")
    }
    ratio = med["harness"] / med["bpftrace"]
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["round", "tool", "seconds", "median_ratio"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "seconds": f"{r['seconds']:.4f}", "median_ratio": ""})
        w.writerow(
            {
                "round": "median",
                "tool": "harness/bpftrace",
                "seconds": f"{med['harness']:.4f}/{med['bpftrace']:.4f}",
                "median_ratio": f"{ratio:.3f}",
            }
        )
    print(
        f"harness run {med['harness']:.3f}s vs bare bpftrace {med['bpftrace']:.3f}s: "
        f"{ratio:.2f}x (goal <= 1.3x); {args.csv}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Syscall workload: N getppid() calls, timed around the loop (see syscall_loop.c for the protocol).

Builds syscall_loop.c with cc into a cache directory the first time (a C loop keeps the
per-call cost near the syscall itself, so a probe's overhead is measurable), then execs it so the
pid printed is the pid that makes the calls. Without a C compiler, or with --python, it runs the
same protocol as a Python loop (slower per call; overhead still measurable, just diluted).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from harness.workloads.native import build

SOURCE = Path(__file__).resolve().with_suffix(".c")


def python_loop(count: int, wait_go: bool) -> int:
    print(f"pid {os.getpid()}", flush=True)
    if wait_go and not sys.stdin.readline():
        return 3
    getppid = os.getppid
    start, cpu_start = time.monotonic_ns(), time.thread_time_ns()
    for _ in range(count):
        getppid()
    cpu = time.thread_time_ns() - cpu_start
    elapsed = time.monotonic_ns() - start
    print(f"events {count} elapsed_ns {elapsed} cpu_ns {cpu}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="number of getppid() calls")
    parser.add_argument(
        "--wait-go", action="store_true", help="wait for a stdin line before the loop"
    )
    parser.add_argument("--python", action="store_true", help="use the Python loop, not the C one")
    parser.add_argument(
        "--build-only", action="store_true", help="compile and print the binary path"
    )
    args = parser.parse_args()
    binary = None if args.python else build(SOURCE)
    if args.build_only:
        print(binary or "")
        return 0 if binary else 1
    if binary is None:
        return python_loop(args.count, args.wait_go)
    argv = [str(binary), "--count", str(args.count)] + (["--wait-go"] if args.wait_go else [])
    sys.stdout.flush()
    os.execv(binary, argv)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Sleep workload: N sleeps of a known length, each measured by the workload itself.

The off-CPU profile's independent reading: the workload times every `time.sleep` with the
monotonic clock bpftrace's `nsecs` reads too, and prints (or writes to --report) the count and
the total, so a test can check that the off-CPU time under the sleep's stack covers them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="number of sleeps")
    parser.add_argument("--ms", type=float, default=10.0, help="length of each sleep (ms)")
    parser.add_argument("--report", type=Path, help="also write the measurements here (JSON)")
    args = parser.parse_args()
    slept = 0
    for _ in range(args.count):
        start = time.monotonic_ns()
        time.sleep(args.ms / 1000)
        slept += time.monotonic_ns() - start
    line = {"pid": os.getpid(), "sleeps": args.count, "slept_ns": slept}
    print(json.dumps(line), flush=True)
    if args.report is not None:
        args.report.write_text(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

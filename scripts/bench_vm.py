#!/usr/bin/env python3
"""VM lane timings per kernel: the first `harness run ktrace --lane vm:S` (the guest boots) and
each further run in the same live guest. Writes results/bench/vm_boot.csv.

Each row is one `harness.trace("ktrace", lane=...)` as the CLI makes it: `first` includes the boot
(kernel + virtme-ng init + the guest agent's start); `next` rows reuse the booted guest. The
machine's load is recorded beside the figures: under TCG every guest instruction is emulated on
the host's shared cores, so the absolute times move with what else runs there.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import harness  # noqa: E402
from harness.lanes.registry import get_lane  # noqa: E402

COUNT = 50


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="6.1,6.12")
    ap.add_argument("--runs", type=int, default=3, help="runs per kernel, the first boots")
    ap.add_argument("--csv", type=Path, default=REPO / "results/bench/vm_boot.csv")
    args = ap.parse_args()
    rows = []
    for series in args.kernels.split(","):
        lane = get_lane(f"vm:{series}")
        for i in range(args.runs):
            load = os.getloadavg()[0]
            t0 = time.monotonic()
            t = harness.trace(
                "ktrace", lane=lane, count=COUNT, sizes="100", out=False, report=False
            )
            total = time.monotonic() - t0
            desc = lane.describe()
            rows.append(
                {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "kernel_series": series,
                    "kernel": desc.get("release"),
                    "accel": desc.get("accel"),
                    "job": "first" if i == 0 else "next",
                    "boot_s": f"{desc.get('boot_s') or 0:.2f}" if i == 0 else "",
                    "total_s": f"{total:.2f}",
                    # bpftrace's own start in the guest (LLVM compile and attach, emulated):
                    # what is left of `next` once the harness's work stays on the host.
                    "bpftrace_attach_s": _seconds(t.meta.durations.get("attach_s")),
                    "events": int(t.frames["@stacks"]["value"].sum()),
                    "expected": COUNT,
                    "attach": t.meta.attach,
                    "host_cpus": os.cpu_count(),
                    "host_load1": f"{load:.2f}",
                    "host_kernel": platform.release(),
                }
            )
            print(rows[-1], flush=True)
        lane.close()
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.csv}")
    return 0


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""VM lane timings per kernel: boot to the guest's first command, and a whole `harness run ktrace`.

Each kernel boots once with `harness doctor` (boot time, and the command's own cost) and once
with `harness run ktrace` (the time a user waits in the VM lane). Writes results/bench/vm_boot.csv.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.lanes.vm import _rw_parent, run_guest  # noqa: E402

JOBS = {"doctor": ["doctor"], "run_ktrace": ["run", "ktrace", "--count", "50"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="6.1,6.12")
    ap.add_argument("--csv", type=Path, default=REPO / "results/bench/vm_boot.csv")
    args = ap.parse_args()
    rows = []
    for series in args.kernels.split(","):
        for job, argv in JOBS.items():
            rw = _rw_parent() / f"bench-{series}-{job}-{int(time.time())}"
            out = [*argv, "--out", str(rw / "out")] if job == "run_ktrace" else argv
            guest = run_guest(series, out, rw, timeout=900)
            rows.append(
                {
                    "kernel_series": series,
                    "kernel": guest.release,
                    "accel": guest.accel,
                    "job": job,
                    "boot_s": f"{guest.boot_s or 0:.2f}",
                    "in_guest_s": f"{guest.total_s - (guest.boot_s or 0):.2f}",
                    "total_s": f"{guest.total_s:.2f}",
                    "exit": guest.returncode,
                }
            )
            print(rows[-1], flush=True)
            shutil.rmtree(rw, ignore_errors=True)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

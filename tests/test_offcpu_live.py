"""`harness run offcpu` against the workload's own clock (issue 18): the off-CPU time of the
workload's nanosleep stacks equals the sleeps the workload measured itself."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Five 0.2 s sleeps, each timed by the workload; it prints their total in microseconds.
SLEEPER = ("import time\n"
           "t = 0\n"
           "for _ in range(5):\n"
           "    a = time.monotonic(); time.sleep(0.2); t += time.monotonic() - a\n"
           "print(round(t * 1e6))\n")


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_offcpu_time_covers_the_workloads_own_measured_sleeps(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "offcpu", "-c",
         f"{sys.executable} -c '{SLEEPER}'", "--out", str(out), "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    measured = int((out / "workload.stdout.txt").read_text().split()[-1])
    with (out / "offcpu.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    slept = sum(int(r["value"]) for r in rows if "nanosleep" in r["kstack"])
    # Both clocks run from the sleep's start to the thread running again (run-queue wait
    # included); the workload's also holds the two monotonic() calls around each sleep.
    assert measured >= 1_000_000
    assert abs(slept - measured) <= 0.05 * measured + 20_000, (slept, measured)
    folded = sum(int(line.rsplit(" ", 1)[1])
                 for line in (out / "offcpu.folded").read_text().splitlines())
    assert folded == sum(int(r["value"]) for r in rows)  # the flame graph's total: every row

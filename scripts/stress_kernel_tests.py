#!/usr/bin/env python3
"""Run host-lane kernel tests N times beside a parallel load; record every round in a CSV.

The exact-count test once saw "no event" while other BPF work ran (issue 14). The load here is
what ran then: other bpftrace runs starting, attaching, printing and exiting in a loop, and a
CPU hog, so the tests compete for both cores. Every round's pass/fail counts go to
results/stress/kernel_tests.csv; the script exits non-zero if any round failed.

    .venv/bin/python scripts/stress_kernel_tests.py --rounds 20
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TESTS = [
    "tests/test_runner.py::test_exact_datagram_count_on_udp_send_skb_stack",
    "tests/test_runner.py::test_every_printf_line_kept_while_the_workload_runs",
    "tests/test_runner.py::test_interval_printings_are_stamped_and_the_last_counts_every_workload_call",
    "tests/test_runner.py::test_a_run_stopped_by_its_duration_is_a_normal_end",
    "tests/test_runner.py::test_stop_leaves_no_process_and_no_program",
]
# Another tracer's life in a loop: compile, attach to a busy tracepoint, print a stack map, exit.
OTHER_BPFTRACE = (
    "while :; do bpftrace -e 'tracepoint:raw_syscalls:sys_enter { @[kstack, comm] = count(); } "
    "interval:ms:1500 { exit(); }' >/dev/null 2>&1; done"
)
CPU_HOG = "while True: pass"


def start_load() -> list[subprocess.Popen[bytes]]:
    """Two bpftrace loops and one CPU hog, each in its own process group (ended by pid)."""
    procs = [
        subprocess.Popen(["sh", "-c", OTHER_BPFTRACE], start_new_session=True)
        for _ in range(2)
    ]
    procs.append(subprocess.Popen([sys.executable, "-c", CPU_HOG], start_new_session=True))
    return procs


def stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_round(tests: list[str], log: Path) -> tuple[int, int, float, str]:
    """(passed, failed, seconds, failing test ids) of one pytest run; a failing run's whole
    output goes to `log`, so the cause can be read after the load is gone."""
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    seconds = time.monotonic() - t0
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", tail)) else 0
    failed = sum(int(n) for n in re.findall(r"(\d+) (?:failed|error)", tail))
    if done.returncode != 0 and failed == 0:
        failed = 1
    failing = ";".join(re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.M))
    if failed:
        log.write_text(done.stdout + done.stderr)
    return passed, failed, seconds, failing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "stress" / "kernel_tests.csv")
    ap.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a background job ignores SIGINT) takes the `finally` below: the load stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    load = start_load()
    rows = []
    try:
        time.sleep(2)  # the first loaded tracers are attached
        for n in range(1, args.rounds + 1):
            load_avg = os.getloadavg()[0]
            log = args.out.with_name(f"{args.out.stem}.round{n}.log")
            passed, failed, seconds, failing = run_round(args.tests, log)
            rows.append({
                "round": n, "tests": len(args.tests), "passed": passed, "failed": failed,
                "seconds": f"{seconds:.1f}", "loadavg_1m": f"{load_avg:.2f}",
                "load": "2x looping bpftrace (raw_syscalls kstack map) + 1 CPU hog",
                "failing": failing,
            })
            print(f"round {n}: {passed} passed, {failed} failed, {seconds:.1f} s, "
                  f"load {load_avg:.2f} {failing}", flush=True)
    finally:
        stop_load(load)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total_failed = sum(int(r["failed"]) for r in rows)
    print(f"{len(rows)} rounds, {total_failed} failures -> {args.out}")
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main())

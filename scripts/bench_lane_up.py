#!/usr/bin/env python3
"""`harness run ENTRY --lane vm:6.1` end to end, side by side: a cold VM lane (the run boots its
own guest), a guest kept up by `harness lane up` (reached over SSH), and the same up guest with
the program compiled here ahead of time (bpftrace --aot, bpftrace-aotrt in the guest).
Writes results/bench/lane_up.csv (one row per run) and prints the medians and their ratios.

Each figure is the wall time of the CLI command as a user types it (`harness run ... --lane
vm:6.1 -q --out DIR`), so the harness's start, codegen, the connection, bpftrace in the guest,
the workload, parsing and the report are all in it. Run it under the team's locks:

    flock /work/team/bench.lock flock /work/team/vm.lock python scripts/bench_lane_up.py --cold 0

Phases of each row (seconds; a cold VM lane has no SSH requests, so only attach/traced/stop
and outside are filled): connect_s (ssh session and the agent's start in the guest, to its
hello), requests_s (every request before and after the run: versions, formats, files),
run_call_s (the run request, send to answer), inside it attach_s (bpftrace or bpftrace-aotrt
until its probes are live), traced_s (the workload), stop_s, and run_other_s (the rest of the
run request: the program's round trip, starting the workload, the capture back), and
outside_s (the wall time outside the connection: the harness's start, codegen, parse, report).

Under TCG every guest instruction is emulated on the host's shared cores, so absolute times move
with the machine's load (recorded beside each row); the modes alternate within each round so
that they see the same load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness.cli"]
# entry -> its own count of events (the workload's): ktrace sends 100 datagrams, syscalls
# makes 100 getppid calls by default.
ENTRIES = {"ktrace": ("@stacks", 100), "syscalls": ("@calls", 100)}
# mode -> environment of its runs: `cold` boots a guest per run (no guest up); the others use
# the guest kept up: `up` as the first `lane up` did (bpftrace compiles in the guest, each run
# starts the agent's Python there), `up+aot-resident` with the program compiled here but an
# agent started per run, `up+aot` with both (the resident agent `lane up` starts).
MODES = {
    "cold": {"KTRACE_AOT": "0"},
    "up": {"KTRACE_AOT": "0", "KTRACE_LANE_RESIDENT": "0"},
    "up+aot-resident": {"KTRACE_AOT": "1", "KTRACE_LANE_RESIDENT": "0"},
    "up+aot": {"KTRACE_AOT": "1"},
}


def harness(*argv: str, env: dict[str, str] | None = None, timeout: float = 1200) -> float:
    """Run one harness command; its wall time (it must succeed)."""
    t0 = time.monotonic()
    done = subprocess.run([*HARNESS, *argv], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(argv)} failed: {done.stderr.strip()[-400:]}")
    return took


def one_run(entry: str, mode: str, series: str, where: Path) -> dict[str, object]:
    out = where / f"{entry}-{mode}-{time.monotonic_ns()}"
    env = dict(MODES[mode])
    load = os.getloadavg()[0]
    took = harness("run", entry, "--lane", f"vm:{series}", "-q", "--out", str(out), env=env)
    meta = json.loads((out / "run.json").read_text())
    name, expected = ENTRIES[entry]
    with (out / f"{name.lstrip('@')}.csv").open() as fh:
        total = sum(int(row["value"]) for row in csv.DictReader(fh))
    durations = meta.get("durations") or {}
    aot = [w for w in meta.get("warnings") or [] if "ahead of time" in w]
    lane = meta.get("lane") or {}
    calls = lane.get("calls") or []
    run_call = sum(s for op, s in calls if op == "run")
    other_calls = sum(s for op, s in calls if op != "run")
    connect = float(lane.get("connect_s") or 0.0)
    guest_run = float(durations.get("total_s") or 0.0)  # api's clock: spawn to written
    attach = float(durations.get("attach_s") or 0.0)
    traced = float(durations.get("run_s") or 0.0)
    stop = float(durations.get("stop_s") or 0.0)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "entry": entry,
        "mode": mode,
        "wall_s": f"{took:.2f}",
        # where the wall time went (phases; see PHASES)
        "connect_s": f"{connect:.2f}",
        "requests_s": f"{other_calls:.2f}",
        "run_call_s": f"{run_call:.2f}",
        "attach_s": f"{attach:.2f}",
        "traced_s": f"{traced:.2f}",
        "stop_s": f"{stop:.2f}",
        "run_other_s": f"{max(run_call - attach - traced, 0.0):.2f}" if calls else "",
        "outside_s": f"{took - connect - other_calls - run_call:.2f}" if calls else
        f"{took - guest_run:.2f}",
        "events": total,
        "events_expected": expected,
        "aot": "used" if aot and aot[0].startswith("compiled") else ("refused" if aot else ""),
        "aot_note": aot[0][:160] if aot else "",
        "load_1m": f"{load:.2f}",
    }


def keep(row: dict[str, object], path: Path) -> dict[str, object]:
    """Append one row to the CSV at once (a later failure keeps the rows measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(row, flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="6.1")
    ap.add_argument("--entries", default="ktrace,syscalls")
    ap.add_argument("--rounds", type=int, default=3, help="up-guest rounds per entry and mode")
    ap.add_argument("--cold", type=int, default=1, help="cold VM-lane runs per entry")
    ap.add_argument("--modes", default="up,up+aot-resident,up+aot",
                    help="modes of the up guest, in each round (see MODES)")
    ap.add_argument("--csv", type=Path, default=REPO / "results/bench/lane_up_phases.csv")
    args = ap.parse_args()
    entries = args.entries.split(",")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-lane-up-") as tmp:
        where = Path(tmp)
        harness("lane", "down", f"vm:{args.series}")
        for _ in range(args.cold):
            for entry in entries:
                rows.append(keep(one_run(entry, "cold", args.series, where), args.csv))
        t0 = time.monotonic()
        harness("lane", "up", f"vm:{args.series}")
        up_s = time.monotonic() - t0
        print(f"lane up: {up_s:.1f}s", flush=True)
        try:
            for _ in range(args.rounds):
                for entry in entries:
                    for mode in args.modes.split(","):
                        rows.append(keep(one_run(entry, mode, args.series, where), args.csv))
        finally:
            harness("lane", "down", f"vm:{args.series}")
    print(f"\nlane up took {up_s:.1f}s; medians of wall time (s), ratio to the first mode:")
    for entry in entries:
        med = {mode: statistics.median(float(str(r["wall_s"])) for r in rows
                                       if r["entry"] == entry and r["mode"] == mode)
               for mode in MODES
               if any(r["entry"] == entry and r["mode"] == mode for r in rows)}
        first = next(iter(med.values()))
        print(f"  {entry}: " + ", ".join(
            f"{mode} {m:.1f} ({m / first:.2f}x)" for mode, m in med.items()))
    print(f"rows: {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

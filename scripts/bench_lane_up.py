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

`--before DIR --modes before:up+aot-resident,up+aot-resident` runs the `before:` modes with the
harness of another checkout (e.g. main's, as `git archive` wrote it), side by side with this
one's; with an agent started per run in both (a resident agent runs one checkout's code).

Under TCG every guest instruction is emulated on the host's shared cores, so absolute times move
with the machine's load (recorded beside each row); the modes alternate within each round so
that they see the same load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
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
    # as up+aot, but every run compiles its program anew (no program compiled for an earlier
    # run filled in: harness.lanes.aot_reuse)
    "up+aot-fresh": {"KTRACE_AOT": "1", "KTRACE_AOT_REUSE": "0"},
    "up+aot": {"KTRACE_AOT": "1"},
    # as up+aot, but the workload is udp_send.py as before its C twin (harness.workloads.native)
    "up+aot+py": {"KTRACE_AOT": "1", "KTRACE_NATIVE_WORKLOAD": "0"},
}


# `before:MODE`: MODE's runs with the harness of another checkout (--before DIR: its code runs,
# `python -m harness.cli` from there), side by side with this one's.
BEFORE = "before:"


def harness(*argv: str, env: dict[str, str] | None = None, timeout: float = 1200,
            cwd: Path = REPO) -> float:
    """Run one harness command; its wall time (it must succeed)."""
    t0 = time.monotonic()
    done = subprocess.run([*HARNESS, *argv], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"harness {' '.join(argv)} failed: {done.stderr.strip()[-400:]}")
    return took


def one_run(entry: str, mode: str, series: str, where: Path,
            before: Path | None = None) -> dict[str, object]:
    out = where / f"{entry}-{mode.replace(':', '-')}-{time.monotonic_ns()}"
    env = dict(MODES[mode.removeprefix(BEFORE)])
    cwd = REPO
    if mode.startswith(BEFORE):
        assert before is not None, "before: modes need --before DIR"
        cwd = before
    load = os.getloadavg()[0]
    took = harness("run", entry, "--lane", f"vm:{series}", "-q", "--out", str(out), env=env,
                   cwd=cwd)
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
        # inside run_other_s: compiling the program here once the workload's pid is known
        "compile_s": f"{float((lane.get('aot') or {}).get('compile_s') or 0.0):.2f}",
        "workload": _workload_kind(lane.get("workload_ran") or meta.get("workload") or []),
        "events": total,
        "events_expected": expected,
        "aot": "used" if aot and aot[0].startswith("compiled") else ("refused" if aot else ""),
        "aot_note": aot[0][:160] if aot else "",
        # a program compiled for an earlier run filled in ("filled"), or made for later ones
        "reuse": str((lane.get("aot") or {}).get("reuse") or ""),
        "load_1m": f"{load:.2f}",
    }


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


def _workload_kind(argv: list[str]) -> str:
    return "python" if any(w.endswith(".py") for w in argv[:2]) else "c" if argv else ""


# --- the guest's own phases, side by side (run in the guest, under its python) ---------------
# Each round, alternately: the workload gate started as a new Python (`spawn`, what runs did
# before) and forked from a warm Python (`fork`, the agent's ForkedGate), to the workload's pid;
# the workload from "go" to its exit, udp_send.py (python -S) and its C twin; reading the
# kernel's symbol lists live and from a copy in tmpfs (what the resident's SymbolCopies does);
# and bpftrace-aotrt around the C twin, to its BEGIN marker (`attach`) and from the stop call to
# its exit (`stop`, which names the kstack's frames), with the live lists and with the copies.
GUEST_PHASES = r"""
import json, os, pty, select, subprocess, sys, tempfile, time
code, aot, stop_pid, marker, twin, rounds = sys.argv[1:7]
sys.path.insert(0, code)
from harness.host import workload as w
from harness.host.capabilities import tracefs_root
rows = []
def keep(phase, how, s):
    rows.append({"phase": phase, "how": how, "s": round(s, 4)})
def gated(argv, fork):
    w.FORK_GATE = fork
    t0 = time.monotonic(); g = w.GatedWorkload(argv); t1 = time.monotonic()
    g.go(); status = g.wait(120); t2 = time.monotonic()
    assert status == 0, (argv, g.stderr)
    return t1 - t0, t2 - t1
def aotrt(env):
    master, slave = pty.openpty()
    t0 = time.monotonic()
    p = subprocess.Popen(["bpftrace-aotrt", aot], stdout=slave, stderr=subprocess.DEVNULL,
                         env={**os.environ, **env})
    os.close(slave)
    seen = b""
    while marker.encode() not in seen:
        select.select([master], [], [], 60)
        seen += os.read(master, 65536)
    t1 = time.monotonic()
    subprocess.run([twin, "--no-wait"], stdout=subprocess.DEVNULL, check=True)
    t2 = time.monotonic()
    try:
        os.kill(int(stop_pid), 0)
    except OSError:
        pass
    while True:
        try:
            if not os.read(master, 65536):
                break
        except OSError:
            break
    p.wait(); t3 = time.monotonic(); os.close(master)
    return t1 - t0, t3 - t2
scratch = tempfile.mkdtemp(dir="/run")
funcs = os.path.join(tracefs_root(), "available_filter_functions")
copies = {"kallsyms": "/proc/kallsyms", "available_filter_functions": funcs}
for name, live in copies.items():
    with open(os.path.join(scratch, name), "wb") as fh, open(live, "rb") as src:
        fh.write(src.read())
for _ in range(int(rounds)):
    for fork in (False, True):
        start, _ = gated(["/bin/true"], fork)
        keep("gate_start", "fork" if fork else "spawn", start)
    for how, argv in (("python", [sys.executable, "-S", code + "/harness/workloads/udp_send.py",
                                  "--no-wait"]), ("c", [twin, "--no-wait"])):
        keep("workload", how, gated(argv, True)[1])
    for name, live in copies.items():
        for how, path in (("live", live), ("copy", os.path.join(scratch, name))):
            t0 = time.monotonic()
            with open(path, "rb") as fh:
                while fh.read(1024):  # as bcc and bpftrace read them
                    pass
            keep("read_" + name, how, time.monotonic() - t0)
    attach, stop = aotrt({})
    keep("aotrt_attach", "live", attach); keep("aotrt_stop", "live", stop)
    r, wr = os.pipe()
    child = os.fork()
    if child == 0:  # the resident's copies (a mount namespace of this child's own)
        try:
            os.close(r)
            from pathlib import Path
            from harness.lanes.agent import SymbolCopies
            copied = SymbolCopies(Path(tempfile.mkdtemp(dir="/run")))
            copied.refresh()
            os.write(wr, json.dumps([copied.pinned, *aotrt({})]).encode())
        finally:
            os._exit(0)
    os.close(wr)
    got = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        got += chunk
    os.waitpid(child, 0); os.close(r)
    pinned, attach, stop = json.loads(got)
    assert pinned == "copies", pinned
    keep("aotrt_attach", "copy", attach); keep("aotrt_stop", "copy", stop)
print(json.dumps(rows))
"""


def keep(row: dict[str, object], path: Path) -> dict[str, object]:
    """Append one row to the CSV at once (a later failure keeps the rows measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    if not new:  # rows of an older column set: rewritten under the union (new cells empty)
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            old, header = list(reader), list(reader.fieldnames or [])
        if header != list(row):
            fields = header + [k for k in row if k not in header]
            with path.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(old)
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_header(path) if not new else list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(row, flush=True)
    return row


def guest_phases(series: str, ktrace_dir: Path, rounds: int, where: Path,
                 path: Path) -> list[dict[str, object]]:
    """GUEST_PHASES in the up guest (its ssh config), with the ktrace program as a run compiled
    it (its pid filter dropped: the twin is the only sender); rows kept in `path`."""
    import re

    from harness.lanes import up
    from harness.lanes.aot import compile_program, stop_pid
    from harness.paths import WORKLOADS
    from harness.workloads.native import build

    meta = json.loads((ktrace_dir / "run.json").read_text())
    program = re.sub(r" /pid == \d+/", "", meta["lane"]["aot"]["program"])
    marker = meta["marker"]
    compiled = compile_program(program, marker)
    assert compiled.data is not None, compiled.refused
    aot = where / "ktrace.aot"  # the guest sees this machine's /tmp (below its own)
    aot.write_bytes(compiled.data)
    twin = build(WORKLOADS / "udp_send.c")
    state = up.read_state(series)
    assert state is not None and twin is not None
    load = os.getloadavg()[0]
    done = subprocess.run(
        ["ssh", "-F", state["ssh_config"], state["host"], "python3", "-I", "-S", "-c",
         shlex.quote(GUEST_PHASES), str(REPO), str(aot), str(stop_pid(marker)), marker,
         str(twin), str(rounds)],
        capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"guest phases failed: {done.stderr.strip()[-600:]}")
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [{"date": date, **r, "load_1m": f"{load:.2f}"} for r in json.loads(done.stdout)]
    for row in rows:
        keep(row, path)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="6.1")
    ap.add_argument("--entries", default="ktrace,syscalls")
    ap.add_argument("--rounds", type=int, default=3, help="up-guest rounds per entry and mode")
    ap.add_argument("--cold", type=int, default=1, help="cold VM-lane runs per entry")
    ap.add_argument("--modes", default="up+aot-fresh,up+aot",
                    help="modes of the up guest, in each round (see MODES)")
    ap.add_argument("--guest-rounds", type=int, default=5,
                    help="rounds of the guest's own phases (GUEST_PHASES; 0: none)")
    ap.add_argument("--before", type=Path, default=None,
                    help="another checkout whose harness the before:MODE modes run")
    ap.add_argument("--csv", type=Path, default=REPO / "results/bench/lane_up_phases.csv")
    ap.add_argument("--guest-csv", type=Path,
                    default=REPO / "results/bench/lane_up_guest_phases.csv")
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
        guest: list[dict[str, object]] = []
        try:
            for _ in range(args.rounds):
                for entry in entries:
                    for mode in args.modes.split(","):
                        rows.append(keep(one_run(entry, mode, args.series, where,
                                                 args.before), args.csv))
            ktrace = sorted(where.glob("ktrace-up+aot-*"))
            if args.guest_rounds and ktrace:
                guest = guest_phases(args.series, ktrace[0], args.guest_rounds, where,
                                     args.guest_csv)
        finally:
            harness("lane", "down", f"vm:{args.series}")
    print(f"\nlane up took {up_s:.1f}s; medians of wall time (s), ratio to the first mode:")
    for entry in entries:
        seen = dict.fromkeys(str(r["mode"]) for r in rows if r["entry"] == entry)
        med = {mode: statistics.median(float(str(r["wall_s"])) for r in rows
                                       if r["entry"] == entry and r["mode"] == mode)
               for mode in seen}
        first = next(iter(med.values()))
        print(f"  {entry}: " + ", ".join(
            f"{mode} {m:.1f} ({m / first:.2f}x)" for mode, m in med.items()))
    for entry in entries:  # each phase's median per mode (s)
        cols = ["wall_s", "connect_s", "requests_s", "attach_s", "traced_s", "stop_s",
                "run_other_s", "compile_s", "outside_s"]
        for mode in dict.fromkeys(str(r["mode"]) for r in rows if r["entry"] == entry):
            mine = [r for r in rows if r["entry"] == entry and r["mode"] == mode]
            print(f"  {entry} {mode} (n={len(mine)}, load "
                  f"{statistics.median(float(str(r['load_1m'])) for r in mine):.1f}): " +
                  ", ".join(f"{c} {statistics.median(float(str(r[c]) or 0) for r in mine):.2f}"
                            for c in cols))
    if guest:
        print("guest phases, medians (s) and ratio to the first way:")
        for phase in dict.fromkeys(str(r["phase"]) for r in guest):
            med = {how: statistics.median(float(str(r["s"])) for r in guest
                                          if r["phase"] == phase and r["how"] == how)
                   for how in dict.fromkeys(str(r["how"]) for r in guest if r["phase"] == phase)}
            first = next(iter(med.values())) or 1e-9
            print(f"  {phase}: " + ", ".join(f"{how} {m:.3f} ({m / first:.2f}x)"
                                             for how, m in med.items()))
    print(f"rows: {args.csv}" + (f", {args.guest_csv}" if guest else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

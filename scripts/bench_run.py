#!/usr/bin/env python3
"""`harness run` against bare bpftrace on the same program: A/B wall time and where it goes.

Two cases, each a series of alternating pairs (the order flips every pair, so drift on a shared
machine hits both sides alike):
  harness run 'PROGRAM' --duration D --out DIR      (all default artefacts written)
  bpftrace -e 'PROGRAM interval:ms:D { exit(); }'
with PROGRAM = tracepoint:syscalls:sys_enter_getppid { @c = count(); } and D = 0.3 s and 5 s.
`--bpftrace 0.27` measures another release (issue #15): the bare side runs that release's
command (for 0.27 the cached Debian root's launcher: a private mount namespace and chroot, which
users of a distribution package do not pay) and the harness side `harness run --bpftrace 0.27`;
the CSV is then run_overhead-bpftrace<VERSION>.csv, beside the system release's.
Then a few instrumented harness runs (this script as a driver around harness.cli.main, timing the
runner's and report's functions) give the phase breakdown. Everything goes into one CSV,
results/bench/run_overhead.csv (columns in results/README.md); ratios come from this one run.
"""

from __future__ import annotations

import argparse
import csv
import importlib.abc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROGRAM = "tracepoint:syscalls:sys_enter_getppid { @c = count(); }"
COLUMNS = ("kind", "case", "pair", "tool", "phase", "seconds", "cpu_s", "ratio", "note")
# Phase name -> (start mark, end mark); marks are set by the driver below.
PHASES = {
    "python_start": ("exec", "driver_start"),
    "import_cli": ("driver_start", "cli_imported"),
    "before_spawn": ("cli_imported", "spawn"),
    "spawn": ("spawn", "spawned"),
    "bpftrace_attach": ("spawned", "attached"),
    "traced": ("attached", "stop"),
    "sigint_to_exit": ("stop", "exited"),
    "parse": ("exited", "stopped"),
    "write_csv_json": ("stopped", "report"),
    "report": ("report", "reported"),
    "print_and_exit": ("reported", "exit"),
}
def harness_bin() -> str:
    return str(Path(sys.executable).parent / "harness")


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (children's user+sys) of one command; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


RELEASE: list[str] = []  # ["--bpftrace", VERSION] when one was asked for
BPFTRACE = ["bpftrace"]  # the command that runs the release measured


def bare(duration: float) -> tuple[float, float]:
    ms = round(duration * 1000)
    return _timed([*BPFTRACE, "-e", f"{PROGRAM} interval:ms:{ms} {{ exit(); }}"])


def harness(duration: float, out: Path) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    timing = _timed([harness_bin(), "run", PROGRAM, "--duration", str(duration), "--out", str(out),
                     *RELEASE])
    missing = [n for n in ("c.csv", "run.json", "summary.md") if not (out / n).exists()]
    if missing:
        raise SystemExit(f"harness run left no {', '.join(missing)} in {out}")
    return timing


class Ticker(threading.Thread):
    """getppid() every 10 ms for the whole benchmark, so both sides always trace and print real
    events (on a quiet machine nothing else may call getppid() in 0.3 s)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.01):
            os.getppid()


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def phases(duration: float, out: Path) -> dict[str, float]:
    """One instrumented harness run: this script re-run as the driver; seconds per phase."""
    marks_file = out.with_suffix(".marks.json")
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "BENCH_MARKS": str(marks_file), "BENCH_EXEC": repr(time.time())}
    argv = [sys.executable, __file__, "--driver", "run", PROGRAM, "--duration", str(duration),
            "--out", str(out), *RELEASE]
    subprocess.run(argv, capture_output=True, check=True, env=env)
    marks = json.loads(marks_file.read_text())
    marks["exit"] = time.time()
    return {
        name: marks[b] - marks[a]
        for name, (a, b) in PHASES.items()
        if a in marks and b in marks
    }


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Applies a patch to a module as it is first imported, wherever the harness imports it:
    the driver must not import the runner or the report ahead of the harness (that would move
    their import time out of the phases where the harness pays it)."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        patch = self.patches.pop(name, None)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module = _then(  # type: ignore[method-assign]
                    spec.loader.exec_module, patch)
                return spec
        return None


def _then(
    run: Callable[[ModuleType], None], patch: Callable[[ModuleType], None]
) -> Callable[[ModuleType], None]:
    def exec_module(module: ModuleType) -> None:
        run(module)
        patch(module)

    return exec_module


def driver(argv: list[str]) -> int:
    """Run harness.cli.main(argv) with time marks around the runner's and report's steps."""
    marks: dict[str, float] = {"exec": float(os.environ["BENCH_EXEC"]), "driver_start": time.time()}

    def mark_around(owner: Any, name: str, before: str, after: str | None = None) -> None:
        real = getattr(owner, name, None)
        if real is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            marks.setdefault(before, time.time())
            try:
                return real(*args, **kwargs)
            finally:
                if after is not None:
                    marks.setdefault(after, time.time())

        setattr(owner, name, timed)

    def runner(module: ModuleType) -> None:
        process = module.BpftraceProcess
        mark_around(process, "start", "spawn", "spawned")
        mark_around(process, "wait_attached", "wait", "attached")
        mark_around(process, "stop", "stop", "stopped")
        mark_around(process, "_result", "exited")

    def summary(module: ModuleType) -> None:
        mark_around(module, "write_report", "report", "reported")

    sys.meta_path.insert(0, _PatchOnImport(
        {"harness.host.runner": runner, "harness.report.summary": summary}))
    import harness.cli

    marks["cli_imported"] = time.time()
    rc = harness.cli.main(argv)
    Path(os.environ["BENCH_MARKS"]).write_text(json.dumps(marks))
    harness.cli.exit_now(rc)  # as the `harness` command leaves
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=7, help="A/B pairs of the short run")
    ap.add_argument("--long-pairs", type=int, default=3, help="A/B pairs of the long run")
    ap.add_argument("--duration", type=float, default=0.3, help="short run, seconds")
    ap.add_argument("--long", type=float, default=5.0, help="long run, seconds (0: skip)")
    ap.add_argument("--phase-runs", type=int, default=5, help="instrumented harness runs")
    ap.add_argument("--bpftrace", metavar="VERSION",
                    help="the release to measure (0.27, latest; default: the system's)")
    ap.add_argument("--csv", type=Path,
                    help="output (default results/bench/run_overhead[-bpftrace<VERSION>].csv)")
    ap.add_argument("--driver", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver is not None:
        return driver(args.driver)
    release = "system"
    if args.bpftrace:
        from harness.host.bpftrace_versions import resolve

        found = resolve(args.bpftrace)  # builds the root on first use, before any timing
        RELEASE[:] = ["--bpftrace", args.bpftrace]
        BPFTRACE[:] = [found.command]
        release = f"bpftrace{found.short_version}"
    if args.csv is None:
        suffix = f"-{release}" if args.bpftrace else ""
        args.csv = REPO / "results" / "bench" / f"run_overhead{suffix}.csv"
    # An installed harness has its bytecode compiled (pip does it; setup.sh for the editable
    # install); without it, PYTHONDONTWRITEBYTECODE shells recompile every module every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "harness")],
                   check=True, capture_output=True)
    rows: list[dict[str, Any]] = []
    cases = [(args.duration, args.pairs)] + ([(args.long, args.long_pairs)] if args.long else [])
    ticker = Ticker()
    ticker.start()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        bare(args.duration), harness(args.duration, out)  # warm caches (BTF, capabilities)
        for duration, pairs in cases:
            case = f"{duration:g}s"
            sides = {"bpftrace": bare, "harness": lambda d: harness(d, out)}
            for pair in range(1, pairs + 1):
                order = ["bpftrace", "harness"] if pair % 2 else ["harness", "bpftrace"]
                for tool in order:
                    wall, cpu = sides[tool](duration)
                    note = f"run dir {dir_size(out)} bytes" if tool == "harness" else ""
                    rows.append({"kind": "run", "case": case, "pair": pair, "tool": tool,
                                 "seconds": wall, "cpu_s": cpu, "note": note})
            med = {
                t: statistics.median(r["seconds"] for r in rows
                                     if r["case"] == case and r["tool"] == t and r["kind"] == "run")
                for t in ("bpftrace", "harness")
            }
            cpu_med = {
                t: statistics.median(r["cpu_s"] for r in rows
                                     if r["case"] == case and r["tool"] == t and r["kind"] == "run")
                for t in ("bpftrace", "harness")
            }
            for t in ("bpftrace", "harness"):
                rows.append({"kind": "median", "case": case, "tool": t, "seconds": med[t],
                             "cpu_s": cpu_med[t], "note": f"{pairs} pairs"})
            load = "/".join(f"{x:.1f}" for x in os.getloadavg())
            rows.append({"kind": "ratio", "case": case, "tool": "harness/bpftrace",
                         "ratio": med["harness"] / med["bpftrace"],
                         "note": f"median wall harness / bare (CPU {cpu_med['harness']:.2f} s / "
                                 f"{cpu_med['bpftrace']:.2f} s); {release}; load average "
                                 f"{load} on {os.cpu_count()} CPUs"})
        runs = [phases(args.duration, Path(tmp) / f"phase{i}") for i in range(args.phase_runs)]
        for name in PHASES:
            values = [r[name] for r in runs if name in r]
            if values:
                rows.append({"kind": "phase", "case": f"{args.duration:g}s", "tool": "harness",
                             "phase": name, "seconds": statistics.median(values),
                             "note": f"median of {len(values)} instrumented runs"})
    ticker.stopped.set()
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    for r in rows:
        if r["kind"] == "ratio":
            goal = 1.3 if r["case"] == f"{args.duration:g}s" else 1.1
            print(f"{r['case']}: harness/bpftrace {r['ratio']:.2f}x (goal <= {goal}x)")
        elif r["kind"] == "median":
            print(f"{r['case']}: {r['tool']} median {r['seconds']:.3f}s wall, "
                  f"{r['cpu_s']:.3f}s CPU")
        elif r["kind"] == "phase":
            print(f"  phase {r['phase']:16s} {r['seconds']:.3f}s")
    print(args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side-by-side tracing cost: one workload run untraced, under bpftrace and under the libbpf twin,
alternating A B C A B C ... in one process so ratios hold on a noisy machine.

Workload protocol (workloads/syscall_loop.py, workloads/udp_send.py): the workload prints its pid
(`pid <pid>` or the bare number) first, waits for a line on stdin (syscall_loop with `--wait-go`),
runs exactly N events and, ideally, prints `events <N> elapsed_ns <ns>` timed around its loop, so
start-up costs stay out of the per-event figure; otherwise it is timed from 'go' to its exit. The
tracer attaches to the known pid before any event happens.

Tracers are spawned directly (not through a pty) so the spawn timestamp, the ready line's arrival
and the peak memory (VmHWM, sampled until the tracer exits) belong to that one process.
"""

from __future__ import annotations

import csv
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.errors import HarnessError
from harness.paths import CHECKOUT

MODES = ("untraced", "bpftrace", "libbpf")
ROW_FIELDS = (
    "bench",
    "workload",
    "attach",
    "round",
    "mode",
    "events_expected",
    "events_counted",
    "elapsed_ns",
    "timed_by",
    "ns_per_event",
    "overhead_ns_per_event",
    "attach_ms",
    "peak_rss_kib",
    "kernel",
    "cpu",
    "bpftrace_version",
    "libbpf_version",
    "clang_version",
    "git_rev",
    "started_utc",
)
_DONE = re.compile(r"^events (\d+) elapsed_ns (\d+)\s*$")
_PID = re.compile(r"^(?:pid )?(\d+)\s*$")


class BenchError(HarnessError):
    """A benchmark could not produce a trustworthy sample."""


@dataclass(frozen=True)
class Workload:
    """A command that follows the workload protocol; `events` is what it will emit."""

    argv: Sequence[str]
    events: int
    description: str
    gate: Sequence[str] = ("--wait-go",)  # flag that makes it wait for "go" (none: waits anyway)


@dataclass(frozen=True)
class Tracer:
    """How to run one tracer around a workload pid and read back how many events it saw."""

    mode: str
    argv: Callable[[int], Sequence[str]]  # workload pid -> command line
    is_ready: Callable[[str], bool]  # stdout line -> probes are live
    count_events: Callable[[str], int]  # full stdout after stop -> events seen
    cleanup: Callable[[], None] = lambda: None
    # The same tracer as data, for a lane that runs it elsewhere (a VM guest): `template` is the
    # argv with `{pid}` for the workload's pid and a `{program}` word for program(pid) (codegen
    # stays with the caller); the ready line starts with `ready_prefix` or holds `ready_text`.
    template: Sequence[str] = ()
    program: Callable[[int], str] | None = None
    ready_prefix: str | None = None
    ready_text: str | None = None


@dataclass
class Sample:
    round: int
    mode: str
    events_expected: int
    events_counted: int | None
    elapsed_ns: int
    attach_ms: float | None = None
    peak_rss_kib: int | None = None
    overhead_ns_per_event: float | None = None
    timed_by: str = "loop"

    @property
    def ns_per_event(self) -> float:
        return self.elapsed_ns / self.events_expected


@dataclass
class BenchResult:
    name: str
    workload: Workload
    attach: str
    samples: list[Sample]
    env: dict[str, str] = field(default_factory=dict)
    started_utc: str = ""


class _LineReader(threading.Thread):
    """Collects a child's stdout lines and timestamps the first line that says 'ready'."""

    def __init__(self, stream: object, is_ready: Callable[[str], bool] | None) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.is_ready = is_ready
        self.lines: list[str] = []
        self.ready_ns: int | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        for line in iter(self.stream.readline, ""):  # type: ignore[attr-defined]
            if self.ready_ns is None and self.is_ready is not None and self.is_ready(line):
                self.ready_ns = time.monotonic_ns()
                self.ready.set()
            self.lines.append(line)
        self.ready.set()


def _peak_rss_kib(pid: int) -> int | None:
    """VmHWM of a live process (its resident-set high-water mark), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _start_workload(workload: Workload) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [*workload.argv, *workload.gate],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = _PID.match(first)
    if not match:
        proc.kill()
        _, err = proc.communicate()
        raise BenchError(
            f"workload {workload.argv[0]} did not print 'pid N' first (got {first.strip()!r}; "
            f"stderr {err.strip()[:200]!r})",
            "run it by hand with --wait-go to see why",
        )
    return proc, int(match.group(1))


def _finish_workload(
    proc: subprocess.Popen[str], workload: Workload, timeout: float
) -> tuple[int, str]:
    """Send 'go', wait for the exit: (elapsed ns, how it was timed).

    The workload's own `events N elapsed_ns T` line is preferred (its loop alone); a workload
    without one is timed from 'go' to its exit, which also counts its teardown.
    """
    go = time.monotonic_ns()
    try:
        out, err = proc.communicate("go\n", timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise BenchError(
            f"workload {workload.description} did not finish within {timeout:.0f} s",
            "lower --events or raise --timeout",
        ) from exc
    for line in out.splitlines():
        match = _DONE.match(line)
        if match:
            if int(match.group(1)) != workload.events:
                raise BenchError(
                    f"workload ran {match.group(1)} events, expected {workload.events}",
                    "check the workload's --count handling",
                )
            return int(match.group(2)), "loop"
    if proc.returncode != 0:
        raise BenchError(
            f"workload exited {proc.returncode} (stderr {err.strip()[:200]!r})",
            "run the workload by hand to see why",
        )
    return time.monotonic_ns() - go, "go->exit"


def _stop_tracer(proc: subprocess.Popen[str], timeout: float) -> int | None:
    """SIGINT (both tracers print their results on it) and wait for the exit, sampling the
    tracer's VmHWM until its memory is gone: returns the last high-water mark seen (KiB).

    VmHWM belongs to the exec'd image alone; rusage's ru_maxrss would also count the Python
    parent the child was forked from, before exec.
    """
    from harness.host.runner import perf_event_fds

    peak = _peak_rss_kib(proc.pid)
    probes = perf_event_fds(proc.pid)
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    resend = time.monotonic() + 1
    while time.monotonic() < deadline:
        peak = _peak_rss_kib(proc.pid) or peak
        if proc.poll() is not None:
            return peak
        if time.monotonic() >= resend:
            # bpftrace 0.17 misses a SIGINT outside its epoll_wait: while it still holds every
            # probe it has not begun to stop, and a second SIGINT is safe (runner.py, _wait_exit).
            resend = time.monotonic() + 1
            if probes and perf_event_fds(proc.pid) == probes:
                proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    raise BenchError(
        f"tracer pid {proc.pid} did not exit within {timeout:.0f} s of SIGINT",
        "check that it stops on Ctrl-C",
    )


def run_sample(
    workload: Workload, tracer: Tracer | None, round_no: int, timeout: float = 120.0
) -> Sample:
    """One run of the workload, under `tracer` (or untraced when None)."""
    proc, pid = _start_workload(workload)
    if tracer is None:
        elapsed, timed_by = _finish_workload(proc, workload, timeout)
        return Sample(round_no, "untraced", workload.events, None, elapsed, timed_by=timed_by)
    with tempfile.TemporaryFile(mode="w+") as errlog:
        try:
            reader, attach_ms, (elapsed, timed_by), peak = _traced_run(
                proc, pid, workload, tracer, errlog, timeout
            )
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.communicate()
            tracer.cleanup()
    counted = tracer.count_events("".join(reader.lines))
    return Sample(
        round_no,
        tracer.mode,
        workload.events,
        counted,
        elapsed,
        attach_ms,
        peak,
        timed_by=timed_by,
    )


def _traced_run(
    proc: subprocess.Popen[str],
    pid: int,
    workload: Workload,
    tracer: Tracer,
    errlog: IO[str],
    timeout: float,
) -> tuple[_LineReader, float, tuple[int, str], int | None]:
    """Spawn the tracer on `pid`, wait until ready, let the workload run, stop the tracer:
    (stdout reader, attach ms, (workload elapsed ns, timed by), tracer peak RSS KiB)."""
    argv = list(tracer.argv(pid))
    spawned = time.monotonic_ns()
    try:
        tproc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errlog, text=True)
    except OSError as exc:
        raise BenchError(f"cannot start {argv[0]}: {exc.strerror}", "run scripts/setup.sh") from exc
    reader = _LineReader(tproc.stdout, tracer.is_ready)
    reader.start()
    try:
        if not reader.ready.wait(timeout) or reader.ready_ns is None:
            errlog.seek(0)
            tail = errlog.read().strip().splitlines()[-1:] or ["(no stderr)"]
            raise BenchError(
                f"{tracer.mode} never printed its ready line (exit {tproc.poll()}): {tail[0]}",
                "run the tracer by hand to see why",
            )
        attach_ms = (reader.ready_ns - spawned) / 1e6
        elapsed = _finish_workload(proc, workload, timeout)
        peak = _stop_tracer(tproc, timeout)
        reader.join(timeout)
    finally:
        if tproc.returncode is None:
            tproc.kill()
            tproc.wait()
    return reader, attach_ms, elapsed, peak


def run_rounds(
    workload: Workload,
    tracers: Sequence[Tracer],
    rounds: int,
    warmup: int = 1,
    timeout: float = 120.0,
    progress: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """Alternate untraced, then each tracer, `rounds` times; overhead is per round against that
    round's untraced run. `warmup` rounds run first and are dropped (page cache, JIT, BTF)."""
    samples: list[Sample] = []
    for round_no in range(-warmup, rounds):
        base = run_sample(workload, None, round_no, timeout)
        row = [base]
        for tracer in tracers:
            sample = run_sample(workload, tracer, round_no, timeout)
            sample.overhead_ns_per_event = (sample.elapsed_ns - base.elapsed_ns) / workload.events
            row.append(sample)
        if round_no >= 0:
            samples += row
            for sample in row:
                if progress:
                    progress(sample)
    return samples


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def _git_rev(repo: Path) -> str:
    """Short HEAD, `-dirty` when tracked files differ from it."""
    try:
        rev = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, str]:
    """Machine and tool identity stamped on every CSV row (versions from host.capabilities)."""
    from harness.host.capabilities import capabilities

    caps = capabilities()
    return {
        "kernel": caps.kernel,
        "cpu": f"{cpu_model()} x{os.cpu_count()}",
        "bpftrace_version": caps.bpftrace or "missing",
        "libbpf_version": caps.libbpf or "missing",
        "clang_version": (caps.clang or "missing").replace("Debian ", ""),
        "git_rev": _git_rev(CHECKOUT) if CHECKOUT else "installed",
    }


def rows(result: BenchResult) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for s in result.samples:
        out.append(
            {
                "bench": result.name,
                "workload": result.workload.description,
                "attach": result.attach,
                "round": s.round,
                "mode": s.mode,
                "events_expected": s.events_expected,
                "events_counted": "" if s.events_counted is None else s.events_counted,
                "elapsed_ns": s.elapsed_ns,
                "timed_by": s.timed_by,
                "ns_per_event": f"{s.ns_per_event:.3f}",
                "overhead_ns_per_event": _fmt(s.overhead_ns_per_event),
                "attach_ms": _fmt(s.attach_ms),
                "peak_rss_kib": "" if s.peak_rss_kib is None else s.peak_rss_kib,
                **result.env,
                "started_utc": result.started_utc,
            }
        )
    return out


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def write_csv(result: BenchResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(rows(result))
    return path


def _stats(values: Sequence[float | None]) -> tuple[float, float, float] | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return min(finite), statistics.median(finite), max(finite)


def _cell(stat: tuple[float, float, float] | None, digits: int = 1) -> str:
    if stat is None:
        return "-"
    lo, med, hi = stat
    return f"{med:.{digits}f} ({lo:.{digits}f} .. {hi:.{digits}f})"


def overhead_ratios(samples: Sequence[Sample]) -> list[float]:
    """bpftrace/libbpf per-event overhead, round by round (rounds where both are positive)."""
    by_round: dict[int, dict[str, float]] = {}
    for s in samples:
        if s.overhead_ns_per_event is not None:
            by_round.setdefault(s.round, {})[s.mode] = s.overhead_ns_per_event
    return [
        r["bpftrace"] / r["libbpf"]
        for r in by_round.values()
        if r.get("libbpf", 0) > 0 and "bpftrace" in r
    ]


def summary_markdown(result: BenchResult, extra: Sequence[str] = ()) -> str:
    """Min/median/max per mode, the bpftrace/libbpf ratio and the goals, as markdown."""
    modes = [m for m in MODES if any(s.mode == m for s in result.samples)]
    rounds = len({s.round for s in result.samples})
    lines = [
        f"# Benchmark `{result.name}`",
        "",
        f"Workload: {result.workload.description} ({result.workload.events} events per run); "
        f"attach: {result.attach}; {rounds} rounds, modes alternating {' -> '.join(modes)}; "
        f"started {result.started_utc}.",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in result.env.items()],
        "",
        "Median (min .. max) over rounds:",
        "",
        "| mode | ns/event | overhead ns/event | attach ms | peak RSS MiB | events counted |",
        "|---|---|---|---|---|---|",
    ]
    for mode in modes:
        ss = [s for s in result.samples if s.mode == mode]
        counted = sorted({s.events_counted for s in ss if s.events_counted is not None})
        lines.append(
            f"| {mode} | {_cell(_stats([s.ns_per_event for s in ss]))} "
            f"| {_cell(_stats([s.overhead_ns_per_event for s in ss]))} "
            f"| {_cell(_stats([s.attach_ms for s in ss]))} "
            f"| {_cell(_stats([s.peak_rss_kib / 1024 for s in ss if s.peak_rss_kib is not None]))} "
            f"| {', '.join(map(str, counted)) or '-'} |"
        )
    ratio = _stats(overhead_ratios(result.samples))
    medians = {
        m: _stats([s.overhead_ns_per_event for s in result.samples if s.mode == m])
        for m in ("bpftrace", "libbpf")
    }
    libbpf_attach = _stats(
        [s.attach_ms for s in result.samples if s.mode == "libbpf" and s.attach_ms is not None]
    )
    lines += ["", "Goals:", ""]
    b, lb = medians["bpftrace"], medians["libbpf"]
    if b and lb and lb[1] > 0:
        of_medians = b[1] / lb[1]
        verdict = "met" if of_medians <= 1.25 else "NOT met"
        lines.append(
            f"- bpftrace/libbpf per-event overhead: {of_medians:.2f}x (ratio of medians; "
            f"round by round {_cell(ratio, 2)}) (goal <= 1.25x: {verdict})"
        )
    else:
        lines.append("- bpftrace/libbpf per-event overhead: not measured (needs both tracers)")
    if libbpf_attach:
        verdict = "met" if libbpf_attach[1] < 50 else "NOT met"
        lines.append(
            f"- libbpf twin time to attached: {_cell(libbpf_attach)} ms (goal < 50 ms: {verdict})"
        )
    lines += [*extra, ""]
    return "\n".join(lines)

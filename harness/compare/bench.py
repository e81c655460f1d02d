"""Side-by-side tracing cost: one workload run untraced, under bpftrace and under the libbpf twin,
alternating A B C A B C ... in one process so ratios hold on a noisy machine.

Workload protocol (workloads/syscall_loop.py, workloads/udp_send.py): the workload prints its pid
(`pid <pid>` or the bare number) first, waits for a line on stdin (syscall_loop with `--wait-go`),
runs exactly N events and, ideally, prints `events <N> elapsed_ns <ns> cpu_ns <ns>` timed around
its loop, so start-up costs stay out of the per-event figure; otherwise it is timed from 'go' to
its exit. The tracer attaches to the known pid before any event happens.

End to end, a tracer's overhead is the workload's CPU time per event over the same round's
untraced run when the workload reports its CPU time (`cpu_ns`: its thread's own time, the
probes its events ran included), else its wall time. On a machine shared with other work the
wall clock also counts the time other processes held the CPU: measured here under a load of 5 on
2 cores, 200000 getppid() took 1030-2330 ns each by the wall clock and 497-570 ns of CPU.

Tracers are spawned directly (not through a pty) so the spawn timestamp, the ready line's arrival
and the peak memory (VmHWM, sampled until the tracer exits) belong to that one process. Every
child goes through harness.host.lifetime.spawn: none outlives the harness, however it ends.

Beside the workload's clock, the kernel's: with BPF run-time statistics on (host.bpfstats) every
program the tracer holds is read just before 'go' and again after the workload's exit, so each
sample carries the nanoseconds and runs its programs spent on exactly that workload. The modes
run in a rotating order, one of each per round, so no tracer always follows the same one; rounds
are added past the minimum until the headline ratio is known well enough (compare.stats).
"""

from __future__ import annotations

import contextlib
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

from harness.compare import stats
from harness.errors import HarnessError
from harness.host import bpfstats
from harness.host.bpfstats import ProgramCounters, ProgramRun, stats_enabled
from harness.host.capabilities import capabilities
from harness.host.lifetime import reap, spawn
from harness.host.runner import perf_event_fds
from harness.paths import CHECKOUT

MODES = (
    "untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf",
)
ROW_FIELDS = (
    "bench",
    "workload",
    "attach",
    "round",
    "mode",
    "events_expected",
    "events_counted",
    "elapsed_ns",
    "cpu_ns",
    "timed_by",
    "ns_per_event",
    "overhead_ns_per_event",
    "kernel_ns_per_event",
    "program_ns_per_event",
    "kernel_runs",
    "programs",
    "attach_ms",
    "peak_rss_kib",
    "program",
    "kernel",
    "cpu",
    "bpftrace_version",
    "libbpf_version",
    "clang_version",
    "git_rev",
    "started_utc",
)
_DONE = re.compile(r"^events (\d+) elapsed_ns (\d+)(?: cpu_ns (\d+))?\s*$")
_PID = re.compile(r"^(?:pid )?(\d+)\s*$")


class BenchError(HarnessError):
    """A benchmark could not produce a trustworthy sample."""


class StoppedRounds(KeyboardInterrupt):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP) ended the rounds: `samples` holds every run that
    finished before it (the interrupted round's finished runs too), so the caller writes them
    and then lets the stop go on (it is a KeyboardInterrupt: the CLI exits 128 + `signum`)."""

    def __init__(self, samples: list[Sample], signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.samples = samples
        self.signum = signum
        self.csv: Path | None = None  # where the caller wrote them

    def said(self) -> str:
        """`interrupted by Ctrl-C after 2 full rounds` (for pages and tables)."""
        name = "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name
        return f"interrupted by {name} after {complete_rounds(self.samples)} full round(s)"


def signum_of(stop: KeyboardInterrupt) -> int:
    """The signal a KeyboardInterrupt stands for (the CLI's and the agents' carry it)."""
    return int(getattr(stop, "signum", signal.SIGINT))


def complete_rounds(samples: Sequence[Sample]) -> int:
    """Rounds that ran every run of the most complete round."""
    per_round: dict[int, int] = {}
    for s in samples:
        per_round[s.round] = per_round.get(s.round, 0) + 1
    most = max(per_round.values(), default=0)
    return sum(1 for n in per_round.values() if n == most)


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
    count_events: Callable[[str], int | None]  # full stdout after stop -> events seen (None:
    # a tracer that counts nothing, the floor)
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
    # in-kernel ns per event above the floor's, in the run where the floor ran beside it
    program_ns_per_event: float | None = None
    timed_by: str = "loop"
    programs: list[ProgramRun] | None = None  # the kernel's clock per program (None: not read)
    cpu_ns: int | None = None  # the workload's CPU time around its loop (None: not reported)

    @property
    def ns_per_event(self) -> float:
        return self.elapsed_ns / self.events_expected

    def cost_ns(self) -> int:
        """What end-to-end overhead compares: CPU time when the workload reported it."""
        return self.elapsed_ns if self.cpu_ns is None else self.cpu_ns

    @property
    def kernel_ns(self) -> int | None:
        """Nanoseconds all the tracer's programs ran while the workload ran."""
        return None if not self.programs else sum(p.run_time_ns for p in self.programs)

    @property
    def kernel_runs(self) -> int | None:
        return None if not self.programs else sum(p.run_cnt for p in self.programs)

    @property
    def kernel_ns_per_event(self) -> float | None:
        """The tracer's in-kernel cost per workload event, summed over its programs."""
        ns = self.kernel_ns
        return None if ns is None else ns / self.events_expected

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Sample:
        """A sample sent as `dataclasses.asdict` (from a VM guest) back into one."""
        progs = d.get("programs")
        programs = None if progs is None else [ProgramRun(**p) for p in progs]  # type: ignore[attr-defined]
        return cls(**{**d, "programs": programs})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Rounds:
    """How many rounds: at least `rounds`, then more (up to `max_rounds`) until the headline
    ratio's interval is within +-`precision`; `warmup` unrecorded rounds first (page cache,
    BTF, JIT). `kernel_stats` reads the kernel's clock per program."""

    rounds: int = 5
    max_rounds: int = 5
    warmup: int = 1
    precision: float = stats.PRECISION
    kernel_stats: bool = True
    timeout: float = 120.0
    together: bool = True  # also a run with bpftrace and the twin attached at once (its kernel
    # clock gives the headline in-kernel ratio; needs kernel_stats)


@dataclass
class BenchResult:
    name: str
    workload: Workload
    attach: str
    samples: list[Sample]
    env: dict[str, str] = field(default_factory=dict)
    started_utc: str = ""
    programs: dict[str, str] = field(default_factory=dict)  # mode -> its program's file


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
    proc = spawn(
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
        reap(proc)
        raise BenchError(
            f"workload {workload.argv[0]} did not print 'pid N' first (got {first.strip()!r}; "
            f"stderr {err.strip()[:200]!r})",
            "run it by hand with --wait-go to see why",
        )
    return proc, int(match.group(1))


def _finish_workload(
    proc: subprocess.Popen[str], workload: Workload, timeout: float
) -> tuple[int, str, int | None]:
    """Send 'go', wait for the exit: (elapsed ns, how it was timed, CPU ns or None).

    The workload's own `events N elapsed_ns T [cpu_ns C]` line is preferred (its loop alone); a
    workload without one is timed from 'go' to its exit, which also counts its teardown.
    """
    go = time.monotonic_ns()
    try:
        out, err = proc.communicate("go\n", timeout=timeout)
        reap(proc)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        reap(proc)
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
            cpu = match.group(3)
            return int(match.group(2)), "loop", None if cpu is None else int(cpu)
    if proc.returncode != 0:
        raise BenchError(
            f"workload exited {proc.returncode} (stderr {err.strip()[:200]!r})",
            "run the workload by hand to see why",
        )
    return time.monotonic_ns() - go, "go->exit", None


def _stop_tracer(proc: subprocess.Popen[str], timeout: float) -> int | None:
    """SIGINT (both tracers print their results on it) and wait for the exit, sampling the
    tracer's VmHWM until its memory is gone: returns the last high-water mark seen (KiB).

    VmHWM belongs to the exec'd image alone; rusage's ru_maxrss would also count the Python
    parent the child was forked from, before exec.
    """
    peak = _peak_rss_kib(proc.pid)
    probes = perf_event_fds(proc.pid)
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    resend = time.monotonic() + 1
    while time.monotonic() < deadline:
        peak = _peak_rss_kib(proc.pid) or peak
        if proc.poll() is not None:
            reap(proc)
            return peak
        if time.monotonic() >= resend:
            # bpftrace 0.17 misses a SIGINT outside its epoll_wait: while it still holds every
            # probe it has not begun to stop, and a second SIGINT is safe (runner.py, _wait_exit).
            resend = time.monotonic() + 1
            if probes and perf_event_fds(proc.pid) == probes:
                proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    reap(proc)
    raise BenchError(
        f"tracer pid {proc.pid} did not exit within {timeout:.0f} s of SIGINT",
        "check that it stops on Ctrl-C",
    )


def run_sample(
    workload: Workload,
    tracer: Tracer | None,
    round_no: int,
    timeout: float = 120.0,
    kernel_stats: bool = False,
) -> Sample:
    """One run of the workload, under `tracer` (or untraced when None); with `kernel_stats`
    (statistics already on) the tracer's programs are read around the workload."""
    if tracer is None:
        proc, _ = _start_workload(workload)
        elapsed, timed_by, cpu = _finish_workload(proc, workload, timeout)
        return Sample(
            round_no, "untraced", workload.events, None, elapsed, timed_by=timed_by, cpu_ns=cpu
        )
    return _traced_run(workload, [tracer], round_no, timeout, kernel_stats)[0]


def run_together(
    workload: Workload, tracers: Sequence[Tracer], round_no: int, timeout: float = 120.0
) -> list[Sample]:
    """One run of the workload with every tracer attached at once, attached in the given order
    (each attach point runs its programs in attach order); statistics already on. A sample per
    tracer, its mode prefixed `both:`: each program's `run_time_ns` over the very same events
    in the very same machine state, so their ratio keeps none of the run-to-run noise of a
    shared machine, and the floor's (when it is one of them) is what each of the others paid
    for the attach point and the kernel's clock on those events. The workload's time is the
    sum of all and is nobody's overhead."""
    return _traced_run(workload, tracers, round_no, timeout, True, TOGETHER)


TOGETHER = stats.TOGETHER  # mode prefix of the samples of run_together


@dataclass
class _Attached:
    """One tracer of a traced run: its process, its output, what its programs did."""

    tracer: Tracer
    proc: subprocess.Popen[str]
    reader: _LineReader
    attach_ms: float
    before: dict[int, ProgramCounters] = field(default_factory=dict)
    programs: list[ProgramRun] | None = None
    peak: int | None = None


def _attach(tracer: Tracer, pid: int, errlog: IO[str], timeout: float) -> _Attached:
    """Spawn the tracer on `pid` and wait for its ready line (its probes are live then)."""
    argv = list(tracer.argv(pid))
    spawned = time.monotonic_ns()
    try:
        tproc = spawn(argv, stdout=subprocess.PIPE, stderr=errlog, text=True)
    except OSError as exc:
        raise BenchError(f"cannot start {argv[0]}: {exc.strerror}", "run scripts/setup.sh") from exc
    reader = _LineReader(tproc.stdout, tracer.is_ready)
    reader.start()
    if not reader.ready.wait(timeout) or reader.ready_ns is None:
        reap(tproc)
        errlog.seek(0)
        tail = errlog.read().strip().splitlines()[-1:] or ["(no stderr)"]
        raise BenchError(
            f"{tracer.mode} never printed its ready line (exit {tproc.poll()}): {tail[0]}",
            "run the tracer by hand to see why",
        )
    return _Attached(tracer, tproc, reader, (reader.ready_ns - spawned) / 1e6)


def _traced_run(
    workload: Workload,
    tracers: Sequence[Tracer],
    round_no: int,
    timeout: float,
    kernel_stats: bool,
    prefix: str = "",
) -> list[Sample]:
    """Start the workload, attach each tracer to its pid, let the workload run, stop the
    tracers: a sample per tracer (its mode with `prefix`), each with its attach time, peak RSS
    and, with `kernel_stats`, what each of its programs did during the workload."""
    proc, pid = _start_workload(workload)
    with contextlib.ExitStack() as stack:
        stack.callback(_end_workload, proc)
        attached: list[_Attached] = []
        for tracer in tracers:
            stack.callback(tracer.cleanup)
            errlog = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            attached.append(_attach(tracer, pid, errlog, timeout))
            stack.callback(reap, attached[-1].proc)
        for a in attached if kernel_stats else ():
            a.before = bpfstats.read_programs(a.proc.pid)
        elapsed, timed_by, cpu = _finish_workload(proc, workload, timeout)
        for a in attached if kernel_stats else ():
            after = bpfstats.read_programs(a.proc.pid)
            if not after:
                raise BenchError(
                    f"{a.tracer.mode} (pid {a.proc.pid}) holds no BPF program fd to read its "
                    "in-kernel cost from",
                    "bench it with --no-kernel-stats, or keep its program fds open",
                )
            a.programs = bpfstats.runs_between(
                a.before, after, bpfstats.program_names(list(after))
            )
        for a in attached:
            a.peak = _stop_tracer(a.proc, timeout)
            a.reader.join(timeout)
    return [
        Sample(
            round_no,
            prefix + a.tracer.mode,
            workload.events,
            a.tracer.count_events("".join(a.reader.lines)),
            elapsed,
            a.attach_ms,
            a.peak,
            timed_by=timed_by,
            programs=a.programs,
            cpu_ns=cpu,
        )
        for a in attached
    ]


def _end_workload(proc: subprocess.Popen[str]) -> None:
    """A workload still running when its run failed is killed; each is waited for."""
    if proc.returncode is None:
        proc.kill()
        proc.communicate()
    reap(proc)


def run_rounds(
    workload: Workload,
    tracers: Sequence[Tracer],
    plan: Rounds,
    progress: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """Untraced and each tracer once per round, in an order that rotates from round to round;
    overhead is per round against that round's untraced run. After `plan.warmup` dropped
    rounds and `plan.rounds` kept ones, rounds are added until the headline ratio is narrow
    enough (compare.stats.narrow_enough) or `plan.max_rounds` is reached. BPF run-time
    statistics are on for the whole of it with `plan.kernel_stats`."""
    samples: list[Sample] = []
    round_no = -plan.warmup
    try:
        with stats_enabled() if plan.kernel_stats else contextlib.nullcontext():
            while round_no < max(plan.rounds, plan.max_rounds):
                if round_no >= plan.rounds and stats.narrow_enough(samples, plan.precision):
                    break
                row = _one_round(workload, tracers, round_no, plan)
                if round_no >= 0:
                    samples += row
                    for sample in row:
                        if progress:
                            progress(sample)
                round_no += 1
    except StoppedRounds as stop:  # in a round: its finished runs count (not a warm-up's)
        kept = samples + (stop.samples if round_no >= 0 else [])
        raise StoppedRounds(kept, stop.signum) from None
    except KeyboardInterrupt as stop:  # between runs: every finished round is kept
        raise StoppedRounds(samples, signum_of(stop)) from None
    return samples


def together_pair(tracers: Sequence[Tracer]) -> list[Tracer]:
    """The tracers of the run where all attach at once: bpftrace and the twin when both are
    benched, with the floor when it is (its cost on the same events is what both pay for the
    attach point and the clock; the rest is their program's)."""
    pair = [t for t in tracers if t.mode in ("bpftrace", "libbpf")]
    floor = [t for t in tracers if t.mode == "floor"]
    return floor + pair if len(pair) == 2 else []


def _above_floor(together: list[Sample]) -> list[Sample]:
    """Each tracer's in-kernel cost above the floor's on the same events (with a floor)."""
    floor = next((s for s in together if s.mode == TOGETHER + "floor"), None)
    base = None if floor is None else floor.kernel_ns_per_event
    for s in together:
        if base is not None and s is not floor and s.kernel_ns_per_event is not None:
            s.program_ns_per_event = s.kernel_ns_per_event - base
    return together


def _one_round(
    workload: Workload, tracers: Sequence[Tracer], round_no: int, plan: Rounds
) -> list[Sample]:
    """Every run once (untraced, each tracer, and with `plan.together` bpftrace and the twin
    attached at once, which attaches first alternating by round), starting at a different run
    each round; returned in mode order."""
    modes: list[Tracer | None] = [None, *tracers]
    runs: list[Callable[[], list[Sample]]] = [
        lambda t=t: [run_sample(workload, t, round_no, plan.timeout, plan.kernel_stats)]  # type: ignore[misc]
        for t in modes
    ]
    group = together_pair(tracers) if plan.together and plan.kernel_stats else []
    if group:
        turn = round_no % len(group)
        first = group[turn:] + group[:turn]  # who attaches first (runs first) rotates
        runs.append(lambda: _above_floor(sorted(
            run_together(workload, first, round_no, plan.timeout),
            key=lambda s: MODES.index(s.mode),
        )))
    shift = round_no % len(runs)
    done: dict[int, list[Sample]] = {}
    try:
        for i in [*range(shift, len(runs)), *range(shift)]:
            done[i] = runs[i]()
    except KeyboardInterrupt as stop:  # the runs of this round that finished are kept
        raise StoppedRounds(_round_samples(done, len(modes), workload), signum_of(stop)) from None
    return _round_samples(done, len(modes), workload)


def _round_samples(
    done: dict[int, list[Sample]], alone: int, workload: Workload
) -> list[Sample]:
    """A round's samples in mode order, each tracer's run alone with its overhead over the
    round's untraced run (run 0) when that one finished; `alone`: the runs with one tracer or
    none (untraced first)."""
    base = done[0][0] if 0 in done else None
    for i in range(1, alone):
        if base is None or i not in done:
            continue
        taken = done[i][0]
        cpu = taken.cpu_ns is not None and base.cpu_ns is not None
        traced, untraced = (
            (taken.cost_ns(), base.cost_ns()) if cpu else (taken.elapsed_ns, base.elapsed_ns)
        )
        taken.overhead_ns_per_event = (traced - untraced) / workload.events
    return [s for i in sorted(done) for s in done[i]]


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
                "cpu_ns": "" if s.cpu_ns is None else s.cpu_ns,
                "timed_by": s.timed_by,
                "ns_per_event": f"{s.ns_per_event:.3f}",
                "overhead_ns_per_event": _fmt(s.overhead_ns_per_event),
                "kernel_ns_per_event": _fmt(s.kernel_ns_per_event),
                "program_ns_per_event": _fmt(s.program_ns_per_event),
                "kernel_runs": "" if s.kernel_runs is None else s.kernel_runs,
                "programs": "" if s.programs is None else len(s.programs),
                "attach_ms": _fmt(s.attach_ms),
                "peak_rss_kib": "" if s.peak_rss_kib is None else s.peak_rss_kib,
                "program": result.programs.get(s.mode.removeprefix(TOGETHER), ""),
                **result.env,
                "started_utc": result.started_utc,
            }
        )
    return out


PROGRAM_FIELDS = (
    "bench", "round", "mode", "prog_id", "name", "type", "tag", "run_time_ns", "run_cnt",
    "ns_per_run", "events_expected",
)


def program_rows(result: BenchResult) -> list[dict[str, object]]:
    """One row per (round, mode, BPF program): the kernel's clock for each program."""
    return [
        {
            "bench": result.name,
            "round": s.round,
            "mode": s.mode,
            "prog_id": p.prog_id,
            "name": p.name,
            "type": p.prog_type,
            "tag": p.tag,
            "run_time_ns": p.run_time_ns,
            "run_cnt": p.run_cnt,
            "ns_per_run": _fmt(p.ns_per_run),
            "events_expected": s.events_expected,
        }
        for s in result.samples
        for p in s.programs or ()
    ]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def write_csv(result: BenchResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
        writer.writeheader()
        writer.writerows(rows(result))
    return path


def write_programs_csv(result: BenchResult, path: Path) -> Path | None:
    """`<stem>.programs.csv` beside the bench CSV: per-program rows (None when the kernel's
    clock was not read)."""
    table = program_rows(result)
    if not table:
        return None
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=PROGRAM_FIELDS)
        writer.writeheader()
        writer.writerows(table)
    return path


@dataclass(frozen=True)
class Row:
    """A bench CSV row as the statistics read it back (compare.stats.paired's fields)."""

    round: int
    mode: str
    kernel_ns_per_event: float | None
    overhead_ns_per_event: float | None
    program_ns_per_event: float | None = None


def read_rows(path: Path) -> list[Row]:
    """A bench CSV's rounds, so its verdicts can be made again from the file alone."""

    def number(text: str | None) -> float | None:
        return float(text) if text else None

    with path.open(newline="") as fh:
        return [
            Row(int(r["round"]), r["mode"], number(r.get("kernel_ns_per_event")),
                number(r.get("overhead_ns_per_event")), number(r.get("program_ns_per_event")))
            for r in csv.DictReader(fh)
        ]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _median_cell(values: Sequence[float | None], digits: int = 1) -> str:
    """`95.2 (91.0-99.1)`: the median and its 95% bootstrap interval; `-` without values."""
    finite = _finite(values)
    return stats.median_ci(finite).text(digits=digits) if finite else "-"


def comparisons(samples: Sequence[Sample] | Sequence[Row]) -> list[stats.Comparison]:
    """bpftrace against the twin, in the kernel (on the same events, and in runs of their own)
    and end to end: those that can be made, the headline first."""
    return stats.comparisons(samples)


def _floor_lines(samples: Sequence[Sample]) -> list[str]:
    """Each tracer's in-kernel median as the floor's plus its program's own share."""
    def med(mode: str, metric: str) -> float | None:
        values = _finite([getattr(s, metric) for s in samples if s.mode == mode])
        return statistics.median(values) if values else None

    floor_k, floor_o = med("floor", "kernel_ns_per_event"), med("floor", "overhead_ns_per_event")
    lines = []
    for mode in ("bpftrace", "libbpf"):
        kernel, overhead = med(mode, "kernel_ns_per_event"), med(mode, "overhead_ns_per_event")
        parts = []
        if kernel is not None and floor_k is not None:
            parts.append(
                f"in the kernel {kernel:.1f} = floor {floor_k:.1f} + program "
                f"{kernel - floor_k:.1f} ns/event"
            )
        if overhead is not None and floor_o is not None:
            parts.append(
                f"end to end {overhead:.1f} = floor {floor_o:.1f} + program "
                f"{overhead - floor_o:.1f} ns/event"
            )
        if parts:
            lines.append(f"- {mode}: " + "; ".join(parts) + ".")
    return lines


def _program_table(samples: Sequence[Sample]) -> list[str]:
    """Per mode and program (by name): median ns per run with its interval, runs per event."""
    groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for s in samples:
        for p in s.programs or ():
            if p.ns_per_run is not None:
                key = (s.mode, p.name or f"id {p.prog_id}", p.prog_type)
                groups.setdefault(key, []).append((p.ns_per_run, p.run_cnt / s.events_expected))
    if not groups:
        return []
    lines = [
        "",
        "In-kernel cost per program (`run_time_ns / run_cnt` while the workload ran), median "
        "(95% CI) over rounds:",
        "",
        "| mode | program | type | ns per run | runs per event |",
        "|---|---|---|---|---|",
    ]
    for (mode, name, kind), values in groups.items():
        lines.append(
            f"| {mode} | {name} | {kind} | {_median_cell([v for v, _ in values])} "
            f"| {statistics.median(r for _, r in values):.3f} |"
        )
    return lines


def _stray_lines(samples: Sequence[Sample]) -> list[str]:
    """Rounds where a tracer's programs ran more than once per workload event: other processes
    hit the attach point (the programs run, and pay, before their pid test turns them away)."""
    lines = []
    for mode in MODES:
        extra = [
            s.kernel_runs / s.events_expected
            for s in samples
            if s.mode == mode and s.kernel_runs is not None
            and s.kernel_runs > s.events_expected * 1.01
        ]
        if extra:
            lines.append(
                f"- {mode}: in {len(extra)} round(s) its programs ran up to {max(extra):.2f} "
                "times per workload event: other processes hit the attach point meanwhile (a "
                "tracer's program runs for them until its pid test turns them away), and those "
                "runs' cost is in those rounds' in-kernel figures (the medians over rounds keep "
                "a few such rounds out)."
            )
    return lines


def _runs(modes: Sequence[str]) -> str:
    """The runs of a round as the summary names them."""
    alone = [m for m in modes if not m.startswith(TOGETHER)]
    both = [m.removeprefix(TOGETHER) for m in modes if m.startswith(TOGETHER)]
    return ", ".join(alone + ([f"{' and '.join(both)} attached together ({TOGETHER}*)"]
                              if both else []))


def _timed(samples: Sequence[Sample]) -> str:
    """Which clock the overheads of these samples read."""
    cpu = all(s.cpu_ns is not None for s in samples)
    return "here: CPU time" if cpu else "here: wall time, at least in part"


def _goal(comparison: stats.Comparison | None, goal: float) -> str:
    """Whether the interval of a ratio lies under `goal`: met, NOT met, or undecided."""
    if comparison is None:
        return "not measured (needs both tracers)"
    r = comparison.ratio
    if not math.isfinite(r.lo):
        return f"{r.value:.2f}x, no interval (goal <= {goal}x: undecided)"
    state = "met" if r.hi <= goal else "NOT met" if r.lo > goal else "undecided (CI spans it)"
    return f"{r.value:.2f}x ({r.lo:.2f}x-{r.hi:.2f}x) (goal <= {goal}x: {state})"


def summary_markdown(
    result: BenchResult, extra: Sequence[str] = (), interrupted: str | None = None
) -> str:
    """Verdicts, medians with 95% intervals per mode, floor + program, per-program costs and the
    goals, as markdown. `interrupted` (StoppedRounds.said()) heads a bench that a stop signal
    cut short."""
    samples = result.samples
    modes = [m for m in MODES if any(s.mode == m for s in samples)]
    rounds = len({s.round for s in samples})
    found = comparisons(samples)
    stop = [] if interrupted is None else [
        f"**Interrupted**: {interrupted}. Below are the runs that finished before the stop "
        "(the last round may lack some runs); the rounds the bench would have added are "
        "missing, so the intervals are wider than a full bench's.", "",
    ]
    lines = [
        f"# Benchmark `{result.name}`",
        "",
        *stop,
        f"Workload: {result.workload.description} ({result.workload.events} events per run); "
        f"attach: {result.attach}; {rounds} rounds, every run once per round in a rotating "
        f"order ({_runs(modes)}); started {result.started_utc}.",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in result.env.items()],
        "",
        "Verdicts (ratio of medians, 95% bootstrap CI over rounds resampled whole):",
        "",
        *[f"- {c.verdict}." for c in found],
        *([] if found else ["- none: a verdict needs bpftrace and libbpf both measured."]),
        "",
        "Median (95% CI) over rounds; in-kernel = the tracer's programs' `run_time_ns` per "
        "workload event; overhead = traced - untraced workload time per event, CPU time where "
        f"the workload reports it ({_timed(samples)}); ns/event = the workload's wall time:",
        "",
        "| mode | in-kernel ns/event | above the floor, same run | overhead ns/event | ns/event "
        "| attach ms | peak RSS MiB | events counted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in modes:
        ss = [s for s in samples if s.mode == mode]
        counted = sorted({s.events_counted for s in ss if s.events_counted is not None})
        lines.append(
            f"| {mode} | {_median_cell([s.kernel_ns_per_event for s in ss])} "
            f"| {_median_cell([s.program_ns_per_event for s in ss])} "
            f"| {_median_cell([s.overhead_ns_per_event for s in ss])} "
            f"| {_median_cell([s.ns_per_event for s in ss])} "
            f"| {_median_cell([s.attach_ms for s in ss])} "
            f"| {_median_cell([s.peak_rss_kib / 1024 for s in ss if s.peak_rss_kib])} "
            f"| {', '.join(map(str, counted)) or '-'} |"
        )
    floor = _floor_lines(samples)
    if floor:
        lines += ["", "Floor + program (the floor: an empty program on the same attach point):",
                  "", *floor]
    lines += _program_table(samples)
    stray = _stray_lines(samples)
    if stray:
        lines += ["", "Runs beside the workload's:", "", *stray]
    by_metric: dict[str, stats.Comparison] = {}
    for c in found:  # the headline of each metric: on the same events where both ran at once
        by_metric.setdefault(c.metric, c)
    libbpf_attach = _finite([s.attach_ms for s in samples if s.mode == "libbpf"])
    lines += [
        "",
        "Goals:",
        "",
        "- bpftrace/libbpf in-kernel cost per event: "
        + _goal(by_metric.get("kernel_ns_per_event"), 1.25),
        "- bpftrace/libbpf per-event overhead end to end: "
        + _goal(by_metric.get("overhead_ns_per_event"), 1.25),
    ]
    if libbpf_attach:
        attach = stats.median_ci(libbpf_attach)
        state = "met" if attach.value < 50 else "NOT met"
        lines.append(
            f"- libbpf twin time to attached: {attach.text(' ms')} (goal < 50 ms: {state})"
        )
    lines += [*extra, ""]
    return "\n".join(lines)

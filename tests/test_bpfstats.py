"""harness.host.bpfstats on the real kernel: statistics on through a held descriptor, and a
tracer's programs read through its fds.

The kernel's counters are checked against independent readings: the workload's own number of
getppid() calls and bpftrace's own count of them. Statistics are machine-global and other
processes may hold them on too, so "off again" is checked on what this process holds (its
descriptor gone, the sysctl untouched), never on the global state.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from pathlib import Path

from harness.host import bpfstats

REPO = Path(__file__).resolve().parent.parent
LOOP = REPO / "harness" / "workloads" / "syscall_loop.py"
SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")


class Counter:
    """bpftrace counting one process's getppid() calls, alive until stop()."""

    def __init__(self, pid: int) -> None:
        program = (
            'BEGIN { printf("READY\\n"); } '
            f"tracepoint:syscalls:sys_enter_getppid /pid == {pid}/ {{ @calls = count(); }}"
        )
        self.proc = subprocess.Popen(
            ["bpftrace", "-e", program], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "READY" in line:
                break

    def stop(self) -> int:
        self.proc.send_signal(2)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # a failing test must not leave bpftrace attached
            self.proc.kill()
            self.proc.communicate()
            raise
        match = re.search(r"^@calls: (\d+)$", out, re.M)
        return int(match.group(1)) if match else 0


def _calls(pid_holder: subprocess.Popen[str]) -> None:
    """Let a --wait-go syscall loop run to its end."""
    pid_holder.communicate("go\n", timeout=120)


def _loop(n: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(LOOP), "--count", str(n), "--wait-go"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[-1])


def test_counters_match_the_workload_and_bpftrace(needs_bpf: None) -> None:
    n = 20_000
    sysctl_before = SYSCTL.read_text()
    with bpfstats.stats_enabled():
        assert bpfstats.stats_holders() == 1
        loop, pid = _loop(n)
        try:
            counter = Counter(pid)
            try:
                before = bpfstats.read_programs(counter.proc.pid)
                _calls(loop)
                after = bpfstats.read_programs(counter.proc.pid)
                names = bpfstats.program_names(list(after))
            finally:
                counted = counter.stop()
        finally:
            loop.kill()
            loop.wait()
    assert bpfstats.stats_holders() == 0  # our descriptor is gone: our part of "on" is over
    assert SYSCTL.read_text() == sysctl_before  # the sysctl (others' switch) was never written
    assert counted == n  # bpftrace's own count: the independent reading
    runs = bpfstats.runs_between(before, after, names)
    (probe,) = [r for r in runs if r.run_cnt]  # BEGIN ran before `before`; only the probe ran
    # every getppid() of any process runs the program (the pid test is inside it): at least n
    assert probe.run_cnt >= n and probe.run_time_ns > 0
    assert probe.prog_type == "tracepoint" and probe.name.startswith("sys_enter_getpp")
    assert probe.ns_per_run is not None and probe.ns_per_run > 0


def test_statistics_stay_on_while_another_holder_remains(needs_bpf: None) -> None:
    """Two holders (two benches at once): the inner one leaving must not stop the outer one's
    counting, which the sysctl toggled 1 -> 0 by a second bench would have done."""
    n = 5_000
    with bpfstats.stats_enabled():
        loop, pid = _loop(n)
        try:
            counter = Counter(pid)
            try:
                with bpfstats.stats_enabled():
                    assert bpfstats.stats_holders() == 2
                assert bpfstats.stats_holders() == 1
                before = bpfstats.read_programs(counter.proc.pid)
                _calls(loop)
                after = bpfstats.read_programs(counter.proc.pid)
            finally:
                counter.stop()
        finally:
            loop.kill()
            loop.wait()
    runs = bpfstats.runs_between(before, after)
    assert sum(r.run_cnt for r in runs) >= n


def test_a_process_without_programs_has_none() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert bpfstats.read_programs(sleeper.pid) == {}
        assert bpfstats.process_tree(sleeper.pid) == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert bpfstats.read_programs(sleeper.pid) == {}  # gone: nothing, not an error


def test_runs_between_counts_new_programs_from_zero() -> None:
    c = bpfstats.ProgramCounters
    before = {1: c(1, "aa", 5, 1_000, 10)}
    after = {1: c(1, "aa", 5, 4_000, 40), 2: c(2, "bb", 5, 300, 3)}
    runs = bpfstats.runs_between(before, after, {1: ("one", "tracepoint")})
    assert [(r.prog_id, r.name, r.prog_type, r.run_time_ns, r.run_cnt) for r in runs] == [
        (1, "one", "tracepoint", 3_000, 30),
        (2, "", "5", 300, 3),
    ]
    assert runs[0].ns_per_run == 100.0
    assert bpfstats.ProgramRun(3, "", "", "", 0, 0).ns_per_run is None


def test_a_tree_is_read_through_its_children(needs_bpf: None) -> None:
    """A launcher that forks bpftrace (rather than exec it) still has its programs found."""
    loop, pid = _loop(10)
    program = (
        'BEGIN { printf("READY\\n"); } '
        f"tracepoint:syscalls:sys_enter_getppid /pid == {pid}/ {{ @calls = count(); }}"
    )
    shell = subprocess.Popen(
        ["sh", "-c", 'bpftrace -e "$0"; :', program], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert shell.stdout is not None
        for line in shell.stdout:
            if "READY" in line:
                break
        deadline = time.monotonic() + 30
        while not bpfstats.read_programs(shell.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(bpfstats.process_tree(shell.pid)) == 2
        assert bpfstats.read_programs(shell.pid)
    finally:
        # bpftrace 0.17 misses a SIGINT that lands outside its epoll_wait (runner._wait_exit):
        # sent again until it is gone (its output is not this test's business).
        deadline = time.monotonic() + 60
        while shell.poll() is None and time.monotonic() < deadline:
            for child in bpfstats.process_tree(shell.pid)[1:]:
                subprocess.run(["kill", "-INT", str(child)], check=False)
            with contextlib.suppress(subprocess.TimeoutExpired):
                shell.wait(0.5)
        if shell.poll() is None:  # never leave its program loaded (a failed run once did, 2 h)
            for child in bpfstats.process_tree(shell.pid)[1:]:
                subprocess.run(["kill", "-KILL", str(child)], check=False)
        shell.communicate(timeout=60)
        loop.kill()
        loop.communicate()

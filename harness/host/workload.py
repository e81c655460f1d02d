"""A workload held at the gate: started, its pid known, waiting for "go" before it does anything.

Tracers filter on the workload's pid, so the pid must exist before they attach, and the workload
must not act before they are live. A small shim forks the command's process, which reports its
pid and waits for a line on stdin, then exec()s the real command: exec keeps the pid, so any
command works, unchanged.

The shim is the init of a pid namespace of its own (`unshare --pid --fork --kill-child`): when
the command exits, or the harness dies however it dies, the kernel ends every process the
command left behind, daemons (`setsid -f`) included. Pids stay the host's for everything
outside (tracers filter on the host pid; the shim reports it). Where pid namespaces cannot be
made (no util-linux, no CAP_SYS_ADMIN), the shim is a child subreaper instead: orphans come back
to it and it kills them when the command exits (the watchdog covers the command's process group
if the harness dies). Either way the processes found left behind are named in `left`.

The command's stdout and stderr are read all run (a workload blocks on a full pipe) and kept
bounded: the first and last CAPTURE_KEEP // 2 bytes of each, with a count of what was cut.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from harness.errors import HarnessError
from harness.host.lifetime import (
    PR_SET_PDEATHSIG,
    die_with_parent,
    reap,
    shielded,
    spawn,
    watchdog,
)

# The shim: argv is CONTROL_FD MODE CMD...; it reports on CONTROL_FD `pid N` (the command's
# pid as the host sees it), then `exit S` (the command's status, -N for signal N) and
# `left N COMM,...` (the processes the command left behind, ended with it).
_SHIM = r"""
import os, sys
ctl = os.fdopen(int(sys.argv[1]), "w", buffering=1)
init, argv = sys.argv[2] == "init", sys.argv[3:]
if not init:
    import ctypes
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back here
child = os.fork()
if child == 0:
    ctl.write(f"pid {os.readlink('/proc/self')}\n")  # /proc is the host's: the host's pid
    ctl.close()
    sys.stdin.readline()
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        print(f"workload: cannot run {argv[0]!r}: {err.strerror}", file=sys.stderr)
        os._exit(127)
os.close(0)
me = os.readlink("/proc/self")

def orphans():
    found = []
    for tid in os.listdir(f"/proc/{me}/task"):
        with open(f"/proc/{me}/task/{tid}/children") as f:
            found += f.read().split()
    return found

def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"

while True:
    pid, status = os.wait()
    if pid == child:
        break
ctl.write(f"exit {os.waitstatus_to_exitcode(status)}\n")
left = orphans()
ctl.write(f"left {len(left)} {','.join(comm(p) for p in left)}\n")
ctl.close()
while not init and left:  # init's exit ends the whole namespace; a subreaper kills them itself
    for pid in left:
        try:
            os.kill(int(pid), 9)
        except OSError:
            pass
    try:
        while os.waitpid(-1, 0):
            pass
    except ChildProcessError:
        pass
    left = orphans()
"""

CAPTURE_KEEP = 1 << 20  # bytes of each stream kept: the first and the last half of it


class WorkloadError(HarnessError):
    """The workload could not start or did not finish."""


@functools.cache
def pid_namespaces() -> bool:
    """Whether a workload can get a pid namespace of its own here (once per process)."""
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--kill-child", "true"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        check=False,
    )
    return done.returncode == 0


# The lanes' agent sets it: its gates are forks of itself running the shim (ForkedGate), not a
# new Python each (0.7-1 s of every run in a TCG guest, where the agent's Python is warm).
FORK_GATE = False
CLONE_NEWPID = 0x20000000


class ForkedGate:
    """The shim run in a fork of this process, in a session of its own, dying with it
    (PDEATHSIG) and its group guarded by the watchdog, as spawn() does; in a pid namespace of
    its own when `mode` is "init" (a fork that unshares it, then forks the shim as the
    namespace's init, as `unshare --pid --fork --kill-child` does). What GatedWorkload uses of
    a Popen: pid, stdin, stdout, stderr, returncode, poll(), wait()."""

    def __init__(self, argv: Sequence[str], mode: str, control: int) -> None:
        self.args = list(argv)
        self.returncode: int | None = None
        libc = ctypes.CDLL(None, use_errno=True)  # resolved before the fork (see lifetime)
        pdeath = die_with_parent()
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe(), os.pipe()
        with shielded(deliver=True):
            pid = os.fork()
            if pid == 0:
                _gate_child(argv, mode, control, (in_r, out_w, err_w), pdeath, libc)
            watchdog().guard_group(pid)
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        self.pid = pid
        self.stdin = os.fdopen(in_w, "wb")
        self.stdout = os.fdopen(out_r, "rb")
        self.stderr = os.fdopen(err_r, "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode


def _gate_child(argv: Sequence[str], mode: str, control: int, stdio: tuple[int, int, int],
                pdeath: Callable[[], None], libc: Any) -> NoReturn:
    """In the fork: become the shim (never returns). Only system calls until the shim runs:
    other threads of the parent may have held locks at the fork."""
    status = 1
    try:
        os.setsid()
        pdeath()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        os.dup2(control, 3)
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))
        if mode == "init":
            if libc.unshare(CLONE_NEWPID) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID) failed")
            init = os.fork()  # the namespace's pid 1
            if init != 0:  # as unshare --fork: wait for it, exit with its status
                os.close(3)
                _, got = os.waitpid(init, 0)
                status = os.waitstatus_to_exitcode(got)
                os._exit(status if status >= 0 else 128 - status)
            # as --kill-child: it dies with the fork above it (which it cannot check: a
            # parent outside the namespace is pid 0 here; both share the group reap() kills)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The shim reads "go" from sys.stdin and writes to sys.stderr: fresh objects on fds
        # 0-2 (the parent's may be anything, and may hold bytes it had buffered)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.argv = ["-c", "3", mode, *argv]
        exec(compile(_SHIM, "<workload gate>", "exec"), {"__name__": "__main__"})
        status = 0
    except BaseException as err:  # the fork must never return
        with contextlib.suppress(OSError):
            os.write(2, f"workload gate: {err}\n".encode())
    finally:
        os._exit(status)


class Capture:
    """One stream's bytes, bounded: the first `keep // 2` and the last `keep // 2`, the rest
    counted in `cut`."""

    def __init__(self, keep: int = CAPTURE_KEEP) -> None:
        self.half = keep // 2
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_bytes = 0
        self.total = 0
        self.cut = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail.append(chunk)
        self.tail_bytes += len(chunk)
        while self.tail_bytes > self.half:
            extra = self.tail_bytes - self.half
            first = self.tail[0]
            if len(first) <= extra:
                self.tail.popleft()
                self.tail_bytes -= len(first)
                self.cut += len(first)
            else:
                self.tail[0] = first[extra:]
                self.tail_bytes -= extra
                self.cut += extra

    def text(self) -> str:
        """What was kept; where bytes were cut, a line saying how many."""
        tail = b"".join(self.tail)
        if self.cut:
            note = f"\n[harness: {self.cut} bytes of the workload's output cut here]\n"
            return (
                self.head.decode("utf-8", "replace") + note + tail.decode("utf-8", "replace")
            )
        return (bytes(self.head) + tail).decode("utf-8", "replace")

    def counts(self) -> dict[str, int]:
        return {"bytes": self.total, "cut_bytes": self.cut}


class _Drain(threading.Thread):
    """Reads the workload's stdout and stderr to EOF, all run, into two Captures."""

    def __init__(self, proc: subprocess.Popen[bytes] | ForkedGate) -> None:
        super().__init__(name="workload-drain", daemon=True)
        assert proc.stdout is not None and proc.stderr is not None
        self.fds = {proc.stdout.fileno(): Capture(), proc.stderr.fileno(): Capture()}
        self.stdout, self.stderr = self.fds.values()
        self.stop = False

    def run(self) -> None:
        fds = list(self.fds)
        while fds and not self.stop:
            ready, _, _ = select.select(fds, [], [], 0.2)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    self.fds[fd].add(chunk)
                else:
                    fds.remove(fd)


class GatedWorkload:
    """Start `argv` behind the gate; `go()` releases it; `wait()` collects its exit and output.

    The shim dies with the harness (harness.host.lifetime.spawn), and with it everything the
    command started (its pid namespace, or the watchdog's kill of its process group).
    """

    def __init__(self, argv: Sequence[str]) -> None:
        if not argv:
            raise WorkloadError("empty workload command", "pass a command with --workload")
        self.argv = list(argv)
        self.stopped_by_harness = False
        self.status: int | None = None
        self.left: list[str] = []
        self.isolation = "pid-namespace" if pid_namespaces() else "subreaper"
        mode = "init" if pid_namespaces() else "reaper"
        read_end, write_end = os.pipe()
        try:
            self.proc: subprocess.Popen[bytes] | ForkedGate
            if FORK_GATE:
                self.proc = ForkedGate(self.argv, mode, write_end)
            else:
                launcher = ["unshare", "--pid", "--fork", "--kill-child"] if mode == "init" else []
                self.proc = spawn(
                    # -I -S: the shim needs only the standard library, and a Python without
                    # site starts in a fraction of the time (0.5-1 s less per run in a TCG guest).
                    [*launcher, sys.executable, "-I", "-S", "-c", _SHIM, str(write_end), mode,
                     *self.argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    pass_fds=(write_end,),
                )
        finally:
            os.close(write_end)
        self.control = os.fdopen(read_end, "r")
        self.drain = _Drain(self.proc)
        self.drain.start()
        line = self.control.readline()
        if not line.startswith("pid ") or not line[4:].strip().isdigit():
            self.close()
            why = self.stderr.strip().splitlines()[-1:] or [f"it said {line.strip()!r}"]
            raise WorkloadError(f"the workload could not be started: {why[0]}", "")
        self.pid = int(line[4:])

    @property
    def stdout(self) -> str:
        return self.drain.stdout.text()

    @property
    def stderr(self) -> str:
        return self.drain.stderr.text()

    def output_counts(self) -> dict[str, dict[str, int]]:
        """Bytes the workload wrote to each stream, and how many of them were cut."""
        return {"stdout": self.drain.stdout.counts(), "stderr": self.drain.stderr.counts()}

    def go(self) -> None:
        """Let the workload run."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None, bound: float | None = None) -> int:
        """Wait for the exit (the command's status, -N for a signal); its output is in
        `stdout`/`stderr`, what it left behind in `left`. After `close()`, the status then.
        `bound`: the whole bound the error names, when part of it was waited already."""
        if self.status is not None:
            return self.status
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise WorkloadError(
                f"workload {self.argv[0]!r} did not finish within {bound or timeout:g}s",
                "shorten the workload or raise --timeout",
            ) from None
        self._collect()
        assert self.status is not None
        return self.status

    def _collect(self) -> None:
        """The shim's report and the rest of the output, once the shim is gone."""
        reap(self.proc)
        # What it left behind ended with the shim, so the pipes close; a process that escaped
        # (one the subreaper could not reach) may hold them: read for a second more at most.
        self.drain.join(1.0)
        self.drain.stop = True
        self.drain.join(0.5)
        if not self.drain.is_alive():
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        for line in self.control.read().splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "exit":
                self.status = int(rest)
            elif kind == "left" and rest.split(" ", 1)[0] != "0":
                self.left = rest.split(" ", 1)[1].split(",")
        self.control.close()
        if self.status is None:  # the shim itself was killed
            self.status = self.proc.returncode

    def close(self) -> None:
        """Kill the workload and everything it started, then reap it."""
        if self.proc.poll() is None:
            self.stopped_by_harness = True
        if not self.control.closed:
            self._collect()

"""Nothing the harness starts outlives it, whatever ends it (Ctrl-C, SIGTERM, SIGKILL, a crash).

A tracer left running keeps its BPF program and perf link attached; a workload left running keeps
generating load; a guest's scratch directory left behind fills the disk. Every command that
spawns (run, crosscheck, bench, matrix, the VM lane) goes through this module:

- `spawn()`: the child runs in a session (and process group) of its own, with
  `PR_SET_PDEATHSIG`, so the kernel sends it SIGKILL when the harness goes, even by SIGKILL.
  That signal follows the *thread* that forked the child, not the process: a child asked for
  by another thread (a fleet member's: a guest's vng, an ssh session kept for the process) is
  forked by the lifetime thread, which lives as long as the process, so "parent" means "the
  harness" whichever thread asked. (A guest's vng forked by a member's thread died when that
  thread ended, and the qemu it had started lived on.) bpftrace's pty spawn (runner) and the
  workload gates (workload.ForkedGate) use die_with_parent() in the calling thread instead:
  that thread reaps them before it ends, so its end can only take them down sooner.
- The watchdog: one tiny shell per harness process, started on first use, reading lines from a
  pipe that only the harness holds. The harness registers each child's process group (a
  workload may fork, and PDEATHSIG reaches only the direct child) and each temporary path it
  makes; when the harness dies the pipe closes, and the watchdog kills every group still
  registered and removes every path still registered. A child reaped, a path removed, is
  unregistered by the harness itself.

The watchdog's protocol is plain text lines on its stdin, so the same shell can watch another
machine through any channel that closes when the harness dies (`ssh HOST sh -c SCRIPT`):

    +g PGID    kill process group PGID (SIGKILL) when the harness is gone
    -g PGID    forget it (the harness reaped it)
    +p PATH    remove PATH (rm -rf) when the harness is gone
    -p PATH    forget it (the harness removed it, or keeps it)
    done       exit now, killing and removing nothing

On EOF without `done` it kills every registered group and removes every registered path (again,
up to 1 s, while a process being killed still writes there). It does not wait for the groups to
be gone: an orphan's zombie waits for init, which may reap once a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

PR_SET_PDEATHSIG = 1

# Resolved once in the parent: the preexec function runs between fork and exec, where loading
# a library or importing a module could deadlock on a lock another thread held at fork time.
# The interpreter already has libc loaded, so its own symbols hold prctl: no library search
# (ctypes.util.find_library runs `ldconfig -p`, 10-80 ms of every run's start).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> Callable[[], None]:
    """A preexec function: SIGKILL this child when the harness goes, even by SIGKILL.

    If the harness already died between fork and prctl, the child exits at once instead of
    running orphaned.
    """
    parent = os.getpid()

    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


# POSIX sh (dash): the registered groups are words of $groups, the paths lines of $paths.
WATCHDOG_SH = r"""
trap '' INT HUP
set -f
nl='
'
groups='' paths=''
while IFS= read -r line; do
  arg=${line#?? }
  case $line in
    '+g '*) groups="$groups $arg" ;;
    '-g '*) kept=''; for g in $groups; do [ "$g" = "$arg" ] || kept="$kept $g"; done
            groups=$kept ;;
    '+p '*) paths="$paths$arg$nl" ;;
    '-p '*) kept='' IFS=$nl
            for p in $paths; do [ "$p" = "$arg" ] || kept="$kept$p$nl"; done
            paths=$kept; unset IFS ;;
    done) exit 0 ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
IFS=$nl
for n in 1 2 3 4 5; do
  left=''
  for p in $paths; do rm -rf -- "$p" 2>/dev/null; [ -e "$p" ] && left="$left$p$nl"; done
  paths=$left
  [ -z "$paths" ] && break
  sleep 0.2
done
"""


class Watchdog:
    """The harness's end of one watchdog process: register what must not outlive the harness.

    `argv` starts the watchdog; the default runs WATCHDOG_SH here. Another machine's watchdog is
    the same script behind a channel that closes with the harness (e.g. `["ssh", HOST, "sh -c "
    + shlex.quote(WATCHDOG_SH)]`). What is registered is also kept here, so a watchdog that
    died (someone killed it) is started again with the same registrations.
    """

    def __init__(self, argv: Sequence[str] | None = None) -> None:
        self.argv = list(argv) if argv is not None else ["sh", "-c", WATCHDOG_SH, "ktrace-watchdog"]
        self.groups: set[int] = set()
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal must not end the watchdog first
        )

    def _send(self, line: str) -> None:
        """Send one registration line; a watchdog not (or no longer) running is started and
        sent the whole registered state instead, `line`'s change included."""
        with self._lock:
            for _ in range(2):
                if self._proc is not None and self._proc.poll() is None:
                    lines = [line]
                else:
                    if self._proc is not None:
                        self._proc.wait()
                    self._proc = self._start()
                    lines = [f"+g {g}" for g in sorted(self.groups)]
                    lines += [f"+p {p}" for p in sorted(self.paths)]
                assert self._proc.stdin is not None
                try:
                    self._proc.stdin.write("".join(f"{ln}\n" for ln in lines).encode())
                    self._proc.stdin.flush()
                    return
                except OSError:  # it died under us: start another with everything again
                    self._proc.kill()
                    self._proc.wait()

    def guard_group(self, pgid: int) -> None:
        """Kill process group `pgid` if the harness dies before `release_group(pgid)`."""
        self.groups.add(pgid)
        self._send(f"+g {pgid}")

    def release_group(self, pgid: int) -> None:
        if pgid in self.groups:
            self.groups.discard(pgid)
            self._send(f"-g {pgid}")

    def guard_path(self, path: Path | str) -> None:
        """Remove `path` (a file or a directory tree) if the harness dies before
        `release_path(path)`."""
        text = str(Path(path).absolute())
        if "\n" in text:
            raise ValueError(f"a watched path cannot hold a newline: {text!r}")
        self.paths.add(text)
        self._send(f"+p {text}")

    def release_path(self, path: Path | str) -> None:
        text = str(Path(path).absolute())
        if text in self.paths:
            self.paths.discard(text)
            self._send(f"-p {text}")

    def close(self) -> None:
        """Stop the watchdog without killing or removing anything."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_LOCAL: dict[int, Watchdog] = {}
_LOCAL_LOCK = threading.Lock()


def watchdog() -> Watchdog:
    """This process's watchdog (a forked child gets its own: the pipe is its parent's)."""
    pid = os.getpid()
    with _LOCAL_LOCK:
        if pid not in _LOCAL:
            _LOCAL.clear()
            _LOCAL[pid] = Watchdog()
        return _LOCAL[pid]


T = TypeVar("T")


# pid -> the one-worker pool whose thread forks for the process's other threads.
_LIFETIME: dict[int, ThreadPoolExecutor] = {}


def as_the_harness(job: Callable[[], T]) -> T:
    """`job()` run by a thread that lives as long as the process (the main thread, or the
    lifetime thread for any other: a one-worker pool's, idle until the process ends): what it
    forks dies with the harness, not with the calling thread. For a child meant to outlive the
    call that started it."""
    if threading.current_thread() is threading.main_thread():
        return job()
    pid = os.getpid()  # a forked child has no lifetime thread of its parent's
    with _LOCAL_LOCK:
        if pid not in _LIFETIME:
            _LIFETIME.clear()
            _LIFETIME[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ktrace-lifetime")
        lifetime = _LIFETIME[pid]
    return lifetime.submit(job).result()


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen(argv, **popen) in a session of its own, dying with the harness (not
    with the thread that called: see as_the_harness), its whole process group killed by the
    watchdog if the harness dies first; `reap()` it.

    A `preexec_fn` given runs after the parent-death setting."""
    pdeath = die_with_parent()
    extra = popen.pop("preexec_fn", None)

    def preexec() -> None:
        pdeath()
        if extra is not None:
            extra()

    def fork() -> subprocess.Popen[Any]:
        # A stop signal waits until the child is spawned and guarded: one landing during the
        # fork raised from inside an at-fork hook, where Python only prints it ("Exception
        # ignored") and the stop was lost; and a child not yet guarded could outlive the harness.
        with shielded(deliver=True):
            proc: subprocess.Popen[Any] = subprocess.Popen(
                list(argv), start_new_session=True, preexec_fn=preexec, **popen
            )
            watchdog().guard_group(proc.pid)
        return proc

    return as_the_harness(fork)


class Reapable(Protocol):
    """What reap() needs of a child: a Popen, or a fork that behaves as one (workload gates)."""

    pid: int
    returncode: int | None

    def wait(self) -> int: ...


def exited(proc: Reapable) -> bool:
    """Whether a spawned child has exited, without waiting for it (which poll() does): until
    reap() waits for it, its pid is still its own, and so is its group's id, so reap() can
    still kill what is left of the group (a guest's qemu when vng went first)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # waited for elsewhere
        return True


def reap(proc: Reapable) -> int:
    """Kill what is left of a spawned child's process group, wait for the child, unregister
    it; returns its exit status.

    A child already waited for is not signalled: its pid (the group's id) may be another
    process's by now. Until it is waited for, even as a zombie, the id is still its own."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    status = proc.wait()
    watchdog().release_group(proc.pid)
    return status


@contextlib.contextmanager
def temporary_path(path: Path) -> Iterator[Path]:
    """`path` (made by the caller) is removed if the harness dies inside the block; on leaving
    the block it is only unregistered: removing or keeping it is the caller's business."""
    dog = watchdog()
    dog.guard_path(path)
    try:
        yield path
    finally:
        dog.release_path(path)


SHIELDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def shielded(deliver: bool = False) -> Iterator[list[int]]:
    """Work that a Ctrl-C (or SIGTERM/SIGHUP) must not cut short (stopping bpftrace, saving
    what was gathered): such a signal is held until the work is done. With `deliver` it is
    then handed, once, to the handler that was there before (the CLI's stop: exit 128+N once
    the results are saved); without, it is dropped, and the caller may read the signals held
    (the list yielded) to say the run was interrupted."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    old = {sig: signal.signal(sig, lambda signum, frame: held.append(signum))
           for sig in SHIELDED_SIGNALS}
    try:
        yield held
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        handler = old[signal.Signals(held[0])] if held and deliver else None
        if callable(handler):
            handler(held[0], None)

"""Children that die with the harness, whatever ends it (Ctrl-C, SIGTERM, SIGKILL, a crash).

A tracer left running keeps its BPF program and perf link attached; a workload left running keeps
generating load. Two mechanisms cover every child:

- `PR_SET_PDEATHSIG`: the kernel sends SIGKILL to a child when the harness thread that spawned it
  exits. Children are spawned from the main thread only, so "thread" means "the harness".
- A guard for a process GROUP: a workload may fork (`sh -c '...; ...'`), and PDEATHSIG reaches
  only the direct child. The guard is a tiny shell that reads one line from a pipe the harness
  holds; when the harness dies the pipe closes, the read fails, and the guard kills the group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Callable

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


# Exit without killing after "done"; kill the group on EOF (the harness is gone).
_GUARD = 'IFS= read -r line; [ "$line" = done ] || kill -s KILL -- "-$1" 2>/dev/null; exit 0'


class GroupGuard:
    """Kill process group `pgid` if the harness dies before calling `release()`."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            ["sh", "-c", _GUARD, "ktrace-guard", str(pgid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal must not end the guard first
        )

    def release(self) -> None:
        """The harness has reaped the group itself: tell the guard to exit quietly."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""A workload held at the gate: started, its pid known, waiting for "go" before it does anything.

Tracers filter on the workload's pid, so the pid must exist before they attach, and the workload
must not act before they are live. A tiny shim prints its pid, waits for a line on stdin, then
exec()s the real command: exec keeps the pid, so any command works, unchanged.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from harness.errors import HarnessError
from harness.host.lifetime import reap, spawn

_SHIM = (
    "import os, sys\n"
    "print(os.getpid(), flush=True)\n"
    "sys.stdin.readline()\n"
    "try:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "except OSError as err:\n"
    "    print(f'workload: cannot run {sys.argv[1]!r}: {err.strerror}', file=sys.stderr)\n"
    "    sys.exit(127)\n"
)


class WorkloadError(HarnessError):
    """The workload could not start or did not finish."""


class GatedWorkload:
    """Start `argv` behind the gate; `go()` releases it; `wait()` collects its exit and output.

    The shim dies with the harness (PDEATHSIG survives its exec), and the watchdog kills the
    workload's whole process group if the harness dies, so forked helpers go too.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        if not argv:
            raise WorkloadError("empty workload command", "pass a command with --workload")
        self.argv = list(argv)
        self.proc = spawn(
            [sys.executable, "-c", _SHIM, *self.argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stopped_by_harness = False
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise WorkloadError(f"workload shim did not report its pid (got {line!r})", "")
        self.pid = int(line)
        self.stdout = ""

    def go(self) -> None:
        """Let the workload run."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not flush a closed pipe

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; the workload's stdout is kept in `self.stdout`."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise WorkloadError(
                f"workload {self.argv[0]!r} did not finish within {timeout:g}s",
                "shorten the workload or raise --timeout",
            ) from None
        self.stdout = out or ""
        return self.proc.returncode

    def close(self) -> None:
        """Kill the workload's whole process group (helpers it forked included), then reap it."""
        if self.proc.poll() is None:
            self.stopped_by_harness = True
        reap(self.proc)

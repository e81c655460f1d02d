"""How the runner tells a missed SIGINT apart (runner.back_in_event_wait), on real processes:
one asleep in epoll_wait is seen there, one asleep elsewhere or with a SIGINT pending is not."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from harness.host.runner import back_in_event_wait

EPOLL = "import select; e = select.epoll(); print('ready', flush=True); e.poll()"
SLEEP = "import time; print('ready', flush=True); time.sleep(60)"
# SIGINT blocked, then sent to itself: it stays pending while the process waits in epoll.
PENDING = (
    "import os, select, signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}); "
    "os.kill(os.getpid(), signal.SIGINT); e = select.epoll(); print('ready', flush=True); "
    "e.poll()"
)


def _sleeping_in(pid: int) -> str | None:
    """The kernel function process `pid` sleeps in, or None while it runs (or is not asleep)."""
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    with open(f"/proc/{pid}/wchan") as f:
        wchan = f.read().strip()
    return wchan if state == "S" and wchan not in ("", "0") else None


@contextmanager
def waiting(code: str) -> Iterator[int]:
    """A Python child that runs `code` and then sleeps in it; its pid once it got there."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        # Asleep in its wait: state S in the same kernel function at two looks 50 ms apart.
        # On a loaded 2-core machine the child may wait seconds for a CPU after 'ready' (2 s
        # of looking was not always enough), so it is given 30.
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            now = _sleeping_in(child.pid)
            if now is not None and now == last:
                break
            last = now
            time.sleep(0.05)
        else:
            raise AssertionError(f"the child never settled asleep (last seen in {last!r})")
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_process_asleep_in_epoll_wait_is_seen_there() -> None:
    with waiting(EPOLL) as pid:
        assert back_in_event_wait(pid)


def test_a_process_asleep_elsewhere_is_not() -> None:
    with waiting(SLEEP) as pid:
        assert not back_in_event_wait(pid)


def test_a_pending_sigint_means_it_has_not_taken_it_yet() -> None:
    with waiting(PENDING) as pid:
        assert not back_in_event_wait(pid)


def test_a_process_that_is_gone_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not back_in_event_wait(child.pid)

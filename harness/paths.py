"""Every path root the harness uses, in one place: the package, its workloads, the checkout,
results, and the cache for what it can rebuild (builds, kernels, bpftrace roots, probes)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
WORKLOADS = PACKAGE / "workloads"
# The source checkout when the package runs from one (editable install, tests); a plain
# `pip install .` has none, and nothing but the results default and the VM lane's guest
# working directory depends on it.
CHECKOUT: Path | None = (
    PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None
)


def workload(name: str) -> Path:
    """A workload program shipped in the package (`udp_send.py`, `syscall_loop.py`)."""
    return WORKLOADS / name


def results_root() -> Path:
    """$KTRACE_RESULTS, else the checkout's results/, else ./results where the harness runs."""
    env = os.environ.get("KTRACE_RESULTS")
    if env:
        return Path(env)
    return (CHECKOUT or Path.cwd()) / "results"


def cache_home() -> Path:
    """$KTRACE_CACHE, else ~/.cache/ktrace-harness (or under $XDG_CACHE_HOME)."""
    env = os.environ.get("KTRACE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ktrace-harness"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (made with its folder) for the block: one
    process at a time across the machine builds or boots what the lock names; the others wait,
    then find it done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


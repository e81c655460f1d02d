"""The kernel's own clock per BPF program: `run_time_ns` and `run_cnt`, read around a workload.

The kernel counts each program's runs and the nanoseconds spent in them only while run-time
statistics are on. They are machine-global, and other benchmarks (ours, other engineers', other
tools) turn them on and off too, so this module never writes `kernel.bpf_stats_enabled`: it holds
a `BPF_ENABLE_STATS` file descriptor instead (libbpf's `bpf_enable_stats`, kernel 5.8+). The kernel
keeps statistics on while any such descriptor or the sysctl asks for them (a reference count
under its own mutex), so two holders never turn it off under each other, and the descriptor dies
with this process however it ends: nothing is left to restore.

A tracer's programs are found through its file descriptors: every `anon_inode:bpf-prog` fd of the
tracer's process tree has a `/proc/<pid>/fdinfo/<fd>` with `prog_id`, `run_time_ns` and `run_cnt`
(bpftrace and the twin's loader both keep their programs' fds open while attached). Program names
are not in fdinfo; `bpftool prog show id N` gives them, once per program.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type
STATS_INODE = "anon_inode:bpf-stats"
PROG_INODE = "anon_inode:bpf-prog"


class StatsError(HarnessError):
    """The kernel's per-program statistics could not be turned on or read."""


@dataclass(frozen=True)
class ProgramCounters:
    """One program's cumulative counters as the kernel reports them at one moment."""

    prog_id: int
    tag: str
    prog_type: int
    run_time_ns: int
    run_cnt: int


@dataclass(frozen=True)
class ProgramRun:
    """What one program did between two readings: its runs and the nanoseconds they took."""

    prog_id: int
    name: str
    tag: str
    prog_type: str
    run_time_ns: int
    run_cnt: int

    @property
    def ns_per_run(self) -> float | None:
        return self.run_time_ns / self.run_cnt if self.run_cnt else None


def _libbpf() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as exc:
        raise StatsError(
            f"libbpf's shared library is missing ({exc})", "run scripts/setup.sh (libbpf1)"
        ) from exc


@contextlib.contextmanager
def stats_enabled() -> Iterator[None]:
    """BPF run-time statistics on for the body, through a descriptor this process holds.

    The kernel reference-counts every holder, so leaving the body turns statistics off only if
    nobody else (another benchmark, the sysctl) still wants them.
    """
    fd = _libbpf().bpf_enable_stats(BPF_STATS_RUN_TIME)
    if fd < 0:
        err = ctypes.get_errno() or -fd
        if err == errno.EPERM:
            raise StatsError(
                "the kernel refused BPF_ENABLE_STATS (EPERM: needs CAP_SYS_ADMIN)", "run as root"
            )
        raise StatsError(
            f"the kernel has no per-program BPF statistics ({os.strerror(err)})",
            "use a kernel of 5.8 or later, or pass --no-kernel-stats (end-to-end figures only)",
        )
    try:
        yield
    finally:
        os.close(fd)


def stats_holders(pid: int | None = None) -> int:
    """How many BPF_ENABLE_STATS descriptors a process holds (default: this one)."""
    return sum(1 for _, target in _fds(pid or os.getpid()) if target == STATS_INODE)


def _fds(pid: int) -> Iterator[tuple[str, str]]:
    with contextlib.suppress(OSError):
        for entry in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                yield entry.name, os.readlink(entry.path)


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's list), for a tracer that forks its loader."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(c) for c in Path(task.path, "children").read_text().split()]
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a launcher such as the 0.27 root's wrapper may fork)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += _children(p)
    return seen


def _fdinfo(pid: int, fd: str) -> dict[str, str]:
    text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    return dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())
    )


def read_programs(pid: int) -> dict[int, ProgramCounters]:
    """Every BPF program the process tree of `pid` holds open, by program id, with its
    counters now. A program held by two fds (or two processes) is listed once."""
    found: dict[int, ProgramCounters] = {}
    for p in process_tree(pid):
        for fd, target in _fds(p):
            if target != PROG_INODE:
                continue
            try:
                info = _fdinfo(p, fd)
                prog = ProgramCounters(
                    int(info["prog_id"]),
                    info.get("prog_tag", ""),
                    int(info.get("prog_type", -1)),
                    int(info.get("run_time_ns", 0)),
                    int(info.get("run_cnt", 0)),
                )
            except (OSError, KeyError, ValueError):
                continue  # closed meanwhile, or a kernel without the fields
            found.setdefault(prog.prog_id, prog)
    return found


def program_names(ids: list[int]) -> dict[int, tuple[str, str]]:
    """prog id -> (name, type name) from bpftool, for the ids still loaded; missing ones are
    left out (bpftool absent, or the program already gone)."""
    out: dict[int, tuple[str, str]] = {}
    for prog_id in ids:
        try:
            done = subprocess.run(
                ["bpftool", "-j", "prog", "show", "id", str(prog_id)],
                capture_output=True, text=True, timeout=30, check=False,
            )
            info = json.loads(done.stdout) if done.returncode == 0 else {}
        except (OSError, subprocess.SubprocessError, ValueError):
            info = {}
        if isinstance(info, dict) and "name" in info:
            out[prog_id] = (str(info["name"]), str(info.get("type", "")))
    return out


def runs_between(
    before: Mapping[int, ProgramCounters],
    after: Mapping[int, ProgramCounters],
    names: Mapping[int, tuple[str, str]] | None = None,
) -> list[ProgramRun]:
    """Per program, what happened between two readings of one tracer (ordered by id). A
    program first seen in `after` counts from zero: it was loaded after the first reading."""
    names = names or {}
    runs = []
    for prog_id in sorted(after):
        a, b = after[prog_id], before.get(prog_id)
        name, kind = names.get(prog_id, ("", str(a.prog_type)))
        runs.append(
            ProgramRun(
                prog_id,
                name,
                a.tag,
                kind,
                a.run_time_ns - (b.run_time_ns if b else 0),
                a.run_cnt - (b.run_cnt if b else 0),
            )
        )
    return runs

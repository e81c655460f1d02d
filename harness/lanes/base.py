"""Lanes: the kernel a run happens on, as an object trace, crosscheck, bench and matrix take.

A lane answers four questions about its kernel: what it can trace (`capabilities`), its symbol
table (`kallsyms`), and it runs the machine side of a trace (`run_bpftrace`) or of a crosscheck
(`gather`). Everything else (codegen, parsing, frames, reports) happens in the caller's process,
so the host lane and a VM lane return the same dataclasses.

The lanes by name (`get_lane`, one guest per series, one connection per remote) are in
harness.lanes.registry, which imports the concrete lanes; they import this module.

    get_lane("host")      the running kernel
    get_lane("vm")        a Debian 6.1 guest (virtme-ng), booted once and reused
    get_lane("vm:6.12")   a Debian 6.12 guest
    get_lane("ssh:HOST")  a remote machine over SSH ([user@]host[:port]; harness.lanes.remote)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.progress import Progress, silent

if TYPE_CHECKING:
    from harness.compare.bench import Rounds, Sample, Tracer, Workload
    from harness.compare.gather import Gathered
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.capabilities import Capabilities
    from harness.host.runner import RunResult
    from harness.host.symbols import Kallsyms

ProgramSource = str | Callable[[int | None], str]


class Lane:
    """The interface every lane offers; see the module docstring. `progress` hears the lane's
    own long steps (a VM boot); trace and crosscheck set it for each call."""

    name = "lane"
    progress: Progress = silent

    def capabilities(self) -> Capabilities:
        raise NotImplementedError

    def kallsyms(self) -> Kallsyms:
        raise NotImplementedError

    def bpftrace(self, tracer: Bpftrace) -> Bpftrace:
        """The release that runs on this lane for the one resolved here (`--bpftrace`): a remote
        machine runs its own bpftrace for the system's, and codegen writes for its version."""
        return tracer

    def run_bpftrace(
        self,
        program: ProgramSource,
        marker: str,
        *,
        workload: Sequence[str] | None = None,
        duration: float | None = None,
        timeout: float = 60.0,
        on_progress: Callable[[float], None] | None = None,
        bpftrace: str = "bpftrace",
    ) -> RunResult:
        raise NotImplementedError

    def gather(
        self,
        program_for: Callable[[int], str],
        marker: str,
        *,
        workload: Sequence[str],
        loader: Path,
        obj: Path,
        setting_names: Sequence[str],
        func: str | None,
        pid_offset: int = 0,
        cgroup: str | None = None,
        timeout: float = 60.0,
        bpftrace: str = "bpftrace",
    ) -> Gathered:
        raise NotImplementedError

    def bench(
        self,
        workload: Workload,
        tracers: Sequence[Tracer],
        plan: Rounds,
        progress: Callable[[Sample], None] | None = None,
    ) -> list[Sample]:
        """compare.bench.run_rounds on this lane's kernel: untraced and each tracer per round.
        A stop signal raises compare.bench.StoppedRounds holding the runs that finished."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What run.json records about the lane."""
        return {"name": self.name}

    def close(self) -> None:
        """Release what the lane holds (a booted guest); the host lane holds nothing."""

    def interrupt(self, signum: int | None) -> None:
        """A stop signal (Ctrl-C, SIGTERM) that reached another thread than the one running on
        this lane (a fleet's): stop the run as that signal would, keep its partial capture, and
        start no other (None: clear it)."""


class HostLane(Lane):
    """The running kernel. Its one preparation is mounting tracefs where it is missing."""

    name = "host"
    interrupted: int | None = None  # a stop asked from another thread (interrupt)

    def interrupt(self, signum: int | None) -> None:
        """The run in another thread stops at its next look (within half a second), as a
        Ctrl-C stops it in its own thread, and keeps its partial capture; none starts."""
        self.interrupted = signum

    def _asked(self) -> int | None:
        return self.interrupted

    def capabilities(self) -> Capabilities:
        from harness.host.capabilities import capabilities, mount_tracefs

        mount_tracefs()
        return capabilities()

    def kallsyms(self) -> Kallsyms:
        from harness.host.symbols import kallsyms

        return kallsyms()

    def run_bpftrace(
        self,
        program: ProgramSource,
        marker: str,
        *,
        workload: Sequence[str] | None = None,
        duration: float | None = None,
        timeout: float = 60.0,
        on_progress: Callable[[float], None] | None = None,
        bpftrace: str = "bpftrace",
    ) -> RunResult:
        from harness.host.runner import run_bpftrace

        return run_bpftrace(
            program,
            marker,
            workload=workload,
            duration=duration,
            timeout=timeout,
            on_progress=on_progress,
            bpftrace=bpftrace,
            stop_check=self._asked,
        )

    def gather(self, program_for: Callable[[int], str], marker: str, **kw: Any) -> Gathered:
        from harness.compare.gather import gather

        return gather(program_for, marker, stop_check=self._asked, **kw)

    def bench(
        self,
        workload: Workload,
        tracers: Sequence[Tracer],
        plan: Rounds,
        progress: Callable[[Sample], None] | None = None,
    ) -> list[Sample]:
        from harness.compare.bench import run_rounds

        return run_rounds(workload, tracers, plan, progress)


HOST = HostLane()

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
from typing import TYPE_CHECKING, Any

from harness.compare.bench import run_rounds
from harness.compare.gather import gather
from harness.host.capabilities import capabilities, mount_tracefs
from harness.host.parsed import parse_capture, warm_parser
from harness.host.symbols import kallsyms
from harness.lanes.protocol import run
from harness.progress import Progress, silent

if TYPE_CHECKING:
    from harness.compare.bench import Rounds, Sample, Tracer, Workload
    from harness.compare.gather import Gathered, GatherRequest
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.capabilities import Capabilities
    from harness.host.runner import RunRequest, RunResult
    from harness.host.symbols import Kallsyms

ProgramSource = str | Callable[[int | None], str]  # the program, or made from the workload's pid
Ticks = Callable[[float], None] | None  # hears the seconds a run has traced
OnSample = Callable[["Sample"], None] | None  # hears each bench sample as it comes


class Lane:
    """The interface every lane offers; see the module docstring. A call that may take long
    (a VM boot on first use, a run) reports its phases to the `progress` it is given."""

    name = "lane"

    def capabilities(self, progress: Progress = silent) -> Capabilities:
        raise NotImplementedError

    def kallsyms(self) -> Kallsyms:
        raise NotImplementedError

    def bpftrace(self, tracer: Bpftrace) -> Bpftrace:
        """The release that runs on this lane for the one resolved here (`--bpftrace`): a remote
        machine runs its own bpftrace for the system's, and codegen writes for its version."""
        return tracer

    def run_bpftrace(self, program: ProgramSource, req: RunRequest, *, progress: Progress = silent,
                     on_progress: Ticks = None) -> RunResult:
        """One run (harness.lanes.protocol.RunRequest; `program` is the text or a function of
        the workload's pid), parsed here. `on_progress` hears the seconds traced (this machine
        only)."""
        raise NotImplementedError

    def gather(self, program_for: Callable[[int], str], req: GatherRequest, *,
               progress: Progress = silent) -> Gathered:
        """Both tracers of a crosscheck (compare.gather); `bpftrace` comes back parsed."""
        raise NotImplementedError

    def bench(self, workload: Workload, tracers: Sequence[Tracer], plan: Rounds,
              on_sample: OnSample = None, *, progress: Progress = silent) -> list[Sample]:
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

    def capabilities(self, progress: Progress = silent) -> Capabilities:
        mount_tracefs()
        return capabilities()

    def kallsyms(self) -> Kallsyms:
        return kallsyms()

    def run_bpftrace(self, program: ProgramSource, req: RunRequest, *, progress: Progress = silent,
                     on_progress: Ticks = None) -> RunResult:
        capture = run(program, req, on_progress=on_progress, stop_check=self._asked,
                      on_spawn=warm_parser)
        return parse_capture(capture, req.marker)

    def gather(self, program_for: Callable[[int], str], req: GatherRequest, *,
               progress: Progress = silent) -> Gathered:
        got = gather(program_for, req, self._asked, warm_parser)
        got.bpftrace = parse_capture(got.bpftrace, req.marker)
        return got

    def bench(self, workload: Workload, tracers: Sequence[Tracer], plan: Rounds,
              on_sample: OnSample = None, *, progress: Progress = silent) -> list[Sample]:
        return run_rounds(workload, tracers, plan, on_sample)


HOST = HostLane()

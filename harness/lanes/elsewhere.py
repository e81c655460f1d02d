"""The harness's side of a lane whose machine side runs elsewhere: a VM guest, a remote host.

Both send the same typed requests (harness.lanes.protocol) through their own channel (`call`:
files in a shared directory for a guest booted per process, an SSH session for a remote
host or a guest kept up) and read the same answers back, through one codec
(harness.lanes.wire). What comes back is a raw capture, parsed here, once
(harness.host.parsed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harness.compare.gather import Gathered, GatherRequest
from harness.host.capabilities import capabilities
from harness.host.parsed import parse_capture, warm_parser
from harness.host.runner import Capture, Interrupted, RunRequest, RunResult
from harness.lanes import wire
from harness.lanes.base import Lane, OnSample, ProgramSource, Ticks
from harness.lanes.protocol import (
    BenchAnswer,
    RunAnswer,
    bench_request,
    bench_samples,
)
from harness.progress import Progress, silent
from harness.twin.generic import MapDump

if TYPE_CHECKING:
    from harness.compare.bench import Rounds, Sample, Tracer, Workload
    from harness.host.capabilities import Capabilities

Asked = Callable[[int | None], Any] | None  # answers the machine's program question (a pid)
NAMES = {"Capture": Capture, "MapDump": MapDump}  # what Gathered names only for type checks


class ElsewhereLane(Lane):
    """run_bpftrace, gather and bench for a lane whose machine side answers requests elsewhere;
    a subclass says how a request travels (`call`) and how a local argv word or file is seen
    there (`word`, `put`)."""

    kind = "remote"  # for messages: "a remote bench ..."
    min_timeout = 0.0  # a floor for the attach timeout (a TCG guest needs minutes)

    def call(self, op: str, req: Any, program_for: Asked, progress: Progress) -> dict[str, Any]:
        """Send request `req` as `op`, answer the machine's program questions, and return its
        answer's JSON data (a typed error raised as that error). A stop signal while waiting
        goes to the machine, whose answer is still awaited; it carries `stopped_by` (the
        signal) when the lane saw one: a run that ended there before the stop reached it still
        reports the stop the user asked for, as a signal held here does (runner)."""
        raise NotImplementedError

    def word(self, word: str) -> str:
        """A local argv word as the machine must see it."""
        return word

    def put(self, path: str, executable: bool = False) -> str:
        """A local file (the twin's loader and object) as a path on the machine."""
        return path

    def compiled(self, program: ProgramSource, req: RunRequest, asked: Asked
                 ) -> tuple[RunRequest, Asked, Callable[[RunResult], RunResult]]:
        """A run's request and program answer as this lane sends them (the SSH lane compiles
        the program here for bpftrace-aotrt there), and what completes the result after."""
        return req, asked, lambda result: result

    def settled(self, failed: bool = False) -> None:
        """After a run's call: what `compiled` left running is collected (stopped when the
        run failed)."""

    def run_bpftrace(self, program: ProgramSource, req: RunRequest, *, progress: Progress = silent,
                     on_progress: Ticks = None) -> RunResult:
        req = replace(
            req,
            workload=[self.word(w) for w in req.workload] if req.workload else None,
            timeout=max(req.timeout, self.min_timeout),
            program=program if isinstance(program, str) else None,
        )
        req, asked, finish = self.compiled(program, req,
                                           None if isinstance(program, str) else program)
        warm = _warming(on_progress)
        if asked is None:
            warm()
        else:
            answer_for = asked

            def asked(pid: int | None) -> Any:
                answer = answer_for(pid)
                warm()
                return answer

        try:  # whatever fails before `finish` settled it stops what `compiled` left running
            data = self.call("run", req, asked, progress)
            answer: RunAnswer = wire.decode(RunAnswer, data, NAMES)
            result = finish(parse_capture(answer.result, req.marker))
        except BaseException:
            self.settled(failed=True)
            raise
        if data.get("stopped_by") is not None:  # see `call`
            result.error = result.error or Interrupted(int(data["stopped_by"]))
        return result

    def gather(self, program_for: Callable[[int], str], req: GatherRequest, *,
               progress: Progress = silent) -> Gathered:
        req = replace(
            req,
            loader=self.put(req.loader, executable=True),
            obj=self.put(req.obj),
            workload=[self.word(w) for w in req.workload],
            timeout=max(req.timeout, self.min_timeout),
        )
        data = self.call("gather", req, lambda pid: program_for(int(pid or 0)), progress)
        got: Gathered = wire.decode(Gathered, data, NAMES)
        got.bpftrace = parse_capture(got.bpftrace, req.marker)
        got.interrupted = got.interrupted or data.get("stopped_by")
        return got

    def bench(self, workload: Workload, tracers: Sequence[Tracer], plan: Rounds,
              on_sample: OnSample = None, *, progress: Progress = silent) -> list[Sample]:
        """The rounds run there (its kernel, its bpftrace, the twin built here); each round's
        program is generated here when the machine names the workload's pid, and each tracer's
        output comes back to be counted here, by the tracer's own count_events."""
        req, asked = bench_request(workload, tracers, plan, self.word, self.min_timeout,
                                   self.kind)
        data = self.call("bench", req, asked, progress)
        answer = wire.decode(BenchAnswer, data)
        answer.interrupted = answer.interrupted or data.get("stopped_by")
        return bench_samples(answer, tracers, on_sample)


def _warming(on_progress: Ticks) -> Callable[[], None]:
    """What runs once the program is on its way to the machine (handed over with the request,
    or as the answer to its question): the output parser is compiled (warm_parser), and
    `on_progress` gets one tick, 0 (a run elsewhere sends no ticks of its own), on which the
    caller loads what its report needs (api.trace, cli.run). Both happen here while the machine
    starts bpftrace (1.5-3 s in a TCG guest) instead of after the run."""
    done: list[bool] = []

    def warm() -> None:
        if done:
            return
        done.append(True)
        warm_parser()
        if on_progress is not None:
            on_progress(0.0)

    return warm


# What a machine's agent reports of its kernel (its hello); the rest of Capabilities (clang,
# bpftool, libbpf, qemu) is this machine's: codegen and the twin's build happen here.
KERNEL_FACTS = ("kernel", "arch", "root", "btf", "tracefs", "kprobes", "lockdown")


def capabilities_of(facts: dict[str, Any], bpftrace: str | None, kvm: bool) -> Capabilities:
    """A machine's capabilities: its kernel's facts as its agent sent them, its bpftrace, and
    this machine's tools. kfunc is not probed there (bpftrace --info loads LLVM: a minute
    under TCG)."""
    own = {name: facts[name] for name in KERNEL_FACTS}
    return replace(capabilities(), **own, kfunc=False, bpftrace=bpftrace, kvm=kvm)

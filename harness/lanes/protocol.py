"""The lane protocol as types: what the harness asks of a machine's side, and what comes back.

A lane call is one request dataclass (runner.RunRequest, compare.gather.GatherRequest,
BenchRequest) and one answer (RunAnswer, compare.gather.Gathered, BenchAnswer). Both ends use
these same classes, carried as JSON by harness.lanes.wire: the harness's lanes build the
requests and read the answers (the host lane hands them to the machine side directly), and
the machine side (`run` and `bench` here, compare.gather.gather) serves them wherever it runs:
this machine, a VM guest (harness.lanes.guest), a remote host's agent (harness.lanes.agent).
What comes back is raw (a runner.Capture): the harness parses it, once (harness.host.parsed).
Nothing here imports the parser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from harness.compare.bench import (
    TOGETHER,
    Rounds,
    Sample,
    StoppedRounds,
    Tracer,
    Workload,
    run_rounds,
)
from harness.errors import HarnessError
from harness.host.runner import Capture, RunRequest, capture_bpftrace

Ask = Callable[[int | None], str]  # the workload's pid -> the program text (codegen's side)


@dataclass
class RunAnswer:
    """A run's raw capture (a stop signal that cut it short is its error: runner.Interrupted)."""

    result: Capture


@dataclass
class TracerData:
    """A bench tracer as data (compare.bench.Tracer's template, program and ready line)."""

    mode: str
    template: list[str]
    ready_prefix: str | None = None
    ready_text: str | None = None


@dataclass
class BenchRequest:
    """compare.bench's rounds on the machine's kernel; each round's program is asked of the
    harness with the workload's pid, at most one tracer has one."""

    workload: Workload
    tracers: list[TracerData]
    plan: Rounds


@dataclass
class BenchAnswer:
    """The samples, each tracer output (a sample's events_counted is its index here, counted
    by the harness), and the stop signal that ended the rounds early (None: none did)."""

    samples: list[Sample]
    outputs: list[str] = field(default_factory=list)
    interrupted: int | None = None


# --- the machine side ------------------------------------------------------------------------


def run(program: str | Ask, req: RunRequest, *, bpftrace: str | None = None,
        on_progress: Callable[[float], None] | None = None,
        stop_check: Callable[[], int | None] | None = None,
        on_spawn: Callable[[], None] | None = None) -> Capture:
    """The machine side of a run (`bpftrace`: the command, when the machine wraps the
    request's, as for a program compiled ahead of time)."""
    return capture_bpftrace(
        program, req.marker, workload=req.workload, duration=req.duration,
        timeout=req.timeout, on_progress=on_progress, bpftrace=bpftrace or req.bpftrace,
        stop_check=stop_check, on_spawn=on_spawn,
    )


def bench(req: BenchRequest, ask: Callable[[int], str]) -> BenchAnswer:
    """The machine side of a bench: the rounds, each tracer's output kept for the harness to
    count; a stop signal answers with the runs that finished."""
    outputs: list[str] = []

    def keep(out: str) -> int:
        outputs.append(out)
        return len(outputs) - 1

    def tracer(t: TracerData) -> Tracer:
        words, prefix, text = list(t.template), t.ready_prefix, t.ready_text
        return Tracer(
            t.mode,
            lambda pid: [ask(pid) if w == "{program}" else w.replace("{pid}", str(pid))
                         for w in words],
            lambda line: (prefix is not None and line.startswith(prefix))
            or (text is not None and text in line),
            keep,
        )

    try:
        samples = run_rounds(req.workload, [tracer(t) for t in req.tracers], req.plan)
    except StoppedRounds as stop:  # the harness's stop: the runs that finished go back
        return BenchAnswer(stop.samples, outputs, stop.signum)
    return BenchAnswer(samples, outputs)


# --- the harness's side ----------------------------------------------------------------------


def bench_request(workload: Workload, tracers: Sequence[Tracer], plan: Rounds,
                  word: Callable[[str], str], min_timeout: float, where: str
                  ) -> tuple[BenchRequest, Callable[[int | None], str] | None]:
    """The request for a bench elsewhere (`word` makes an argv word the machine's own), and
    what answers the machine's program question (None: no tracer has a program). Tracers
    must be data (harness.compare.bench_cases builds them so); `where` names the lane kind in
    the error."""
    with_program = [t for t in tracers if t.program is not None]
    if len(with_program) > 1 or any(not t.template for t in tracers):
        raise HarnessError(
            f"a {where} bench takes tracers described as data, at most one with a program",
            "build the tracers with harness.compare.bench_cases",
        )
    req = BenchRequest(
        replace(workload, argv=[word(w) for w in workload.argv], gate=list(workload.gate)),
        [TracerData(t.mode, [word(w) for w in t.template], t.ready_prefix, t.ready_text)
         for t in tracers],
        replace(plan, timeout=max(plan.timeout, min_timeout)),
    )
    program = with_program[0].program if with_program else None
    if program is None:
        return req, None

    def program_for(pid: int | None) -> str:
        assert program is not None and pid is not None, "the machine asks with a pid"
        return program(pid)

    return req, program_for


def bench_samples(answer: BenchAnswer, tracers: Sequence[Tracer],
                  on_sample: Callable[[Sample], None] | None) -> list[Sample]:
    """The samples of a bench elsewhere, each tracer's output counted here by the tracer's own
    count_events; a stop there raises StoppedRounds here with the runs that finished."""
    by_mode = {t.mode: t for t in tracers}
    samples = []
    for sample in answer.samples:
        if sample.events_counted is not None:  # the index of its output, counted here
            output = answer.outputs[sample.events_counted]
            tracer = by_mode[sample.mode.removeprefix(TOGETHER)]  # both:bpftrace, too
            sample.events_counted = tracer.count_events(output)
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)
    if answer.interrupted is not None:  # the runs that finished before the stop
        raise StoppedRounds(samples, answer.interrupted)
    return samples


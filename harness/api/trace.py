"""`trace`: generate, run and parse one bpftrace program around a workload (`harness run`), and
`plan`, what it would run (`--dry-run`).

Everything a run decides (which attach type, the marker, what bounds it, what run.json records,
where the run directory goes) is decided here and in harness.api.planner, so the CLI only parses
arguments and prints.

    >>> import harness
    >>> t = harness.trace("ktrace")
    >>> t.frames["@stacks"].head()
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api.inputs import (
    ATTACH_CHOICES,
    Out,
    RunOptions,
    claim,
    parse_workload,
    run_options,
    spec_options,
    udp_workload,
    unclaimed_on_failure,
)
from harness.api.planner import settle, with_twin
from harness.api.trace_result import Trace, finish
from harness.clock import utc_iso
from harness.errors import HarnessError, UsageError
from harness.host.bpftrace_versions import resolve
from harness.host.lifetime import shielded
from harness.host.runner import RunRequest, UnknownProbe
from harness.lanes.registry import get_lane
from harness.output.stacks import program_key_names
from harness.progress import Progress, silent
from harness.report.record import RunMeta
from harness.spec.literal import calls_exit
from harness.spec.plan import Programs

if TYPE_CHECKING:
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.runner import RunResult
    from harness.lanes.base import Lane
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan


def _warming_report(
    on_progress: Callable[[float], None] | None, report: bool
) -> Callable[[float], None]:
    """The run's progress callback, which first imports what writing the run directory and its
    report needs, in a thread, so that it happens while bpftrace traces instead of after it.

    It starts on the first progress call, once the probes are live: earlier, it would compete
    with the way to the spawn and with bpftrace's own start-up (the runner compiles the output
    parser during that start-up). pandas is not among them: the run directory is written
    without it (see Trace.frames)."""
    started: list[bool] = []

    def load() -> None:
        from harness.output import columns  # noqa: F401  (Trace.tables, the CSVs)

        if report:
            from harness.report import summary  # noqa: F401  (flame graph, summary.md)

    def tick(elapsed: float) -> None:
        if not started:
            started.append(True)
            threading.Thread(target=load, name="warm-report", daemon=True).start()
        if on_progress is not None:
            on_progress(elapsed)

    return tick


@dataclass(frozen=True)
class TraceOptions(RunOptions):
    """`trace`'s options (its keywords), one object for trace, plan and fleet: RunOptions' (the
    workload, `count` datagrams of `sizes` bytes for a catalog entry's own, attach, timeout,
    bpftrace, force) and

    duration: stop after this many seconds (a run needs a workload, a duration, or both).
    frequency: the `profile` entry's sampling rate in Hz (default 99).
    report: also write summary.md, folded stacks and flame graphs into the run directory.
    plots: with report, also draw histogram PNGs (matplotlib; `harness report DIR` draws them
        later, so a quick run need not pay for it).
    """

    duration: float | None = None
    frequency: int | None = None
    report: bool = True
    plots: bool = False


def trace(
    target: str,
    *,
    lane: str | Lane = "host",
    out: Out = None,
    check: bool = True,
    on_progress: Callable[[float], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    progress: Progress | None = None,
    options: TraceOptions | None = None,
    **keywords: Any,
) -> Trace:
    """Generate, run and parse one bpftrace program around a workload.

    target: a catalog name (`ktrace`, `syscalls`), a probe such as `kprobe:udp_send_skb` (shaped
        by the spec keywords), or a whole bpftrace program (run as written, plus a BEGIN marker).
    lane: where the kernel under test is: `host` (the running kernel), `vm` or `vm:6.12` (a
        Debian guest booted once per process and reused; see harness.lanes), or a Lane object.
    out: the run directory; None makes results/run-<UTC time>/, False writes nothing. It is
        checked before tracing: a file, an unwritable place, or a non-empty directory that is
        not an earlier run of the same target is refused (`force` replaces its contents).
    check: raise the run's typed error (after writing what was gathered); False leaves it in
        `Trace.error` for the caller (the CLI prints the tables first). Failures before anything
        was gathered (bad input, a probe that cannot attach) raise either way.
    on_progress: called with the seconds since attach, about every 50 ms while the run lasts
        on this machine; a run elsewhere (a guest, an ssh host) calls it once, with 0, when
        its program is handed over.
    on_plan: called with the Plan (attach choice, program text) before anything starts (`-v`).
    progress: hears the lane's long steps (a VM guest's kernel fetch and boot, the run in the
        guest; harness.progress); None reports nowhere.
    options: a TraceOptions; each of its fields may also be given as a keyword, which wins:
        workload: the command to trace, as a shell string or an argv list; a catalog entry
            brings its own (sized by `count` datagrams of `sizes` bytes).
        duration: stop after this many seconds (a run needs a workload, a duration, or both).
        attach: force `kprobe`, `kfunc` or `tracepoint` instead of the capability probe's choice.
        timeout: seconds to wait for bpftrace to attach.
        bpftrace: the release to run: None or "system" (the installed one), its version
            ("0.17"), "0.27" or "latest" (a Debian root built on first use; `harness doctor`
            lists them). Codegen writes the program for that release.
        force, report, plots, frequency: as TraceOptions says.
    The other keywords are the spec's: for a probe target, the CLI's spec flags as keywords
        (`count_by="kstack"`, `arg="skb=struct sk_buff *"`, `hist="skb->len"`, `filter=...`,
        `workload_pid=True`); for a catalog entry, the filters `pid`, `comm` and `cgroup`
        (`profile` and `offcpu` watch the workload's process, else `pid`'s, else every CPU).
    """
    began = (time.time(), time.monotonic())
    o, spec_opts = TraceOptions.split(options, keywords)
    arguments.seconds("timeout", o.timeout, "60")
    run_options(lane=lane, out=out, bpftrace=o.bpftrace, progress=progress, on_plan=on_plan,
                on_progress=on_progress, report=o.report, plots=o.plots, check=check,
                force=o.force)
    tracer = resolve(o.bpftrace)
    equivalents, argv = trace_request(target, o, spec_opts)
    return run_trace(
        target,
        equivalents,
        attach=o.attach,
        reason=None,
        argv=argv,
        duration=o.duration,
        lane=lane,
        tracer=tracer,
        out=out,
        force=o.force,
        timeout=o.timeout,
        report=o.report,
        plots=o.plots,
        check=check,
        on_progress=on_progress,
        began=began,
        on_plan=on_plan,
        progress=progress,
    )


def plan(
    target: str,
    *,
    lane: str | Lane = "host",
    twin: bool = True,
    progress: Progress | None = None,
    options: TraceOptions | None = None,
    **keywords: Any,
) -> Plan:
    """What `trace` with the same arguments would run, without running it (`--dry-run`): the
    attach type and why, and the program text as it runs (WORKLOAD_PID standing for a pid
    known only once the workload starts). It reads the lane's capabilities and kernel symbols
    and the bpftrace version, no more; a VM lane boots its guest for them. `twin` also
    generates the libbpf C twin where the spec is in its subset (else `Plan.twin_note`).
    `options` and the keywords: as in `trace` (what only a run uses, such as its timeout,
    changes nothing here)."""
    o, spec_opts = TraceOptions.split(options, keywords)
    run_options(lane=lane, out=False, bpftrace=o.bpftrace, progress=progress, twin=twin)
    tracer = resolve(o.bpftrace)
    equivalents, argv = trace_request(target, o, spec_opts)
    machine = get_lane(lane)
    caps = machine.capabilities(progress or silent)
    tracer = machine.bpftrace(tracer)
    chosen = settle(target, equivalents, argv, o.attach, None, caps, machine, tracer)
    return with_twin(chosen) if twin else chosen


def trace_request(
    target: str, o: TraceOptions, spec_opts: Mapping[str, Any]
) -> tuple[dict[str, ProbeSpec], list[str] | None]:
    """The checked inputs of a run: the target's specs by attach type (none for a whole
    program) and the workload's argv. Nothing here touches the machine."""
    workload, duration, attach, count, sizes, frequency = (
        o.workload, o.duration, o.attach, o.count, o.sizes, o.frequency
    )
    arguments.text("target", target, "'ktrace' or 'tracepoint:syscalls:sys_enter_getppid'")
    if frequency is not None and ("{" in target or ":" in target):
        raise UsageError(
            "-F/--frequency sets the `profile` entry's rate",
            "write the rate into the probe instead, e.g. profile:hz:99",
        )
    if frequency is not None:
        arguments.integer("frequency", frequency, 1, "99")
    arguments.optional_seconds("duration", duration)
    arguments.choice("attach", attach, ATTACH_CHOICES)
    udp_workload(count, sizes)
    argv = parse_workload(workload)
    equivalents: dict[str, ProbeSpec] = {}
    if "{" in target:
        if spec_opts or attach:
            raise UsageError(
                "spec options and attach apply to a probe or catalog name, not a whole program",
                "write them into the program instead",
            )
        bounded = calls_exit(target)
    elif ":" in target:
        line_spec = spec_options(target, spec_opts)
        equivalents = {line_spec.attach_type: line_spec}
        bounded = False
    else:
        shaping = sorted(set(spec_opts) - set(CATALOG_FILTERS))
        if shaping:
            raise UsageError(
                f"spec options ({', '.join(shaping)}) do not apply to "
                f"catalog entry {target!r}",
                "give a probe such as kprobe:udp_send_skb to shape your own spec (a catalog "
                f"entry takes only the filters {', '.join(CATALOG_FILTERS)})",
            )
        from harness.spec import catalog

        entry = catalog.get(target, hz=frequency)
        argv = argv or entry.workload_argv(count, sizes)
        equivalents = {
            attach: _filtered(spec, spec_opts, watch_workload=argv is not None)
            for attach, spec in entry.equivalents.items()
        }
        bounded = False
    if argv is None and duration is None and not bounded:
        raise UsageError(
            "nothing bounds this run",
            "pass --workload CMD or --duration S"
            + ("" if equivalents else ", or end the program with exit()"),
        )
    if attach and attach not in equivalents:
        if ":" in target and "{" not in target:  # a probe line runs as written
            from harness.spec import catalog

            raise UsageError(
                f"'{target}' is a {next(iter(equivalents))} probe; --attach {attach} only "
                "switches between the equivalents of a catalog entry",
                f"write the {attach} probe yourself, or use a catalog entry "
                f"({', '.join(catalog.names())}), or run the kprobe with --lane vm",
            )
        raise UsageError(
            f"'{target}' has no {attach} form", f"choose one of: {', '.join(equivalents)}"
        )
    return equivalents, argv


# The spec options a catalog entry takes: filters, not a new shape.
CATALOG_FILTERS = ("pid", "comm", "cgroup")


def _filtered(spec: ProbeSpec, filters: Mapping[str, Any], watch_workload: bool) -> ProbeSpec:
    """A catalog spec with the user's filters; one that filters on the workload's pid keeps
    that filter only when a workload runs and no --pid replaces it (profile and offcpu then
    watch every CPU)."""
    if not filters and (watch_workload or not spec.workload_pid):
        return spec
    workload_pid = spec.workload_pid and watch_workload and filters.get("pid") is None
    return dataclasses.replace(spec, workload_pid=workload_pid, **filters)



def run_trace(
    target: str,
    equivalents: Mapping[str, ProbeSpec],
    *,
    attach: str | None,
    reason: str | None,
    argv: list[str] | None,
    duration: float | None,
    lane: str | Lane,
    tracer: Bpftrace,
    out: Out,
    force: bool,
    timeout: float,
    report: bool,
    plots: bool,
    check: bool,
    on_progress: Callable[[float], None] | None,
    began: tuple[float, float],
    again_of: str | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    progress: Progress | None = None,
) -> Trace:
    """The machine side of `trace` and `again`: pick the attach type on the lane, generate the
    program (a whole program when `equivalents` is empty: `target` is its text), run, write."""
    machine = get_lane(lane)
    caps = machine.capabilities(progress or silent)
    tracer = machine.bpftrace(tracer)
    chosen = settle(target, equivalents, argv, attach, reason, caps, machine, tracer)
    if on_plan is not None:
        on_plan(chosen)
    spec, attach_used, reason, marker = chosen.spec, chosen.attach, chosen.reason, chosen.marker
    make_program: str | Callable[[int | None], str]
    if spec is None:
        make_program = chosen.program()
        programs = [make_program]
    else:  # per workload pid; a lane compiling ahead of time asks it for a portable text
        make_program = Programs(chosen)
        programs = make_program.ran
    ticking = _warming_report(on_progress, report)
    # bpftrace names user frames when it prints, after a workload has exited: on the host the
    # workload's map is read while it runs, to name them (when every user stack is its own).
    user_frames = None
    if chosen.needs_pid and machine.name == "host":
        from harness.host.usyms import WorkloadFrames

        user_frames = WorkloadFrames()
        make_program, ticking = user_frames.program(make_program), user_frames.ticking(ticking)
    path = claim(out, "run", target, force)
    spawn = time.monotonic()
    with unclaimed_on_failure(path if out is None else None):
        result = machine.run_bpftrace(
            make_program,
            RunRequest(marker, workload=argv, duration=duration, timeout=timeout,
                       bpftrace=tracer.command),
            progress=progress or silent,
            on_progress=ticking,
        )
    # From here a Ctrl-C waits until what was gathered is written (then exits 128+N).
    with shielded(deliver=True):
        if user_frames is not None:
            user_frames.apply(result.output)
        if spec is not None and result.error is None:
            result.error = _nothing_attached(spec, result.probes)
        from harness.output.printed import printed

        meta = RunMeta(
            command=" ".join(sys.argv),
            target=target,
            spec=spec,
            program=programs[-1] if programs else None,
            marker=marker,
            attach=attach_used,
            attach_reason=reason,
            capabilities=caps.as_dict(),
            workload=argv,
            duration_s=duration,
            timeout_s=timeout,
            workload_status=result.workload_status,
            probes=result.probes,
            exit_status=result.exit_status,
            ended_by=result.ended_by,
            error=str(result.error) if result.error else None,
            printed_lines=result.output.lines if result.output is not None else [],
            diagnostics=result.diagnostics,
            started_at=utc_iso(began[0]),
            ended_at=utc_iso(time.time()),
            durations=durations(result, began[1], spawn),
            bpftrace=tracer.as_dict(),
            warnings=list(result.output.warnings if result.output is not None else result.warnings),
            counts=result.output.counts() if result.output is not None else {},
            printed=printed(result.output) if result.output is not None else {},
            lane=machine.describe(),
            again_of=again_of,
            workload_output=result.extra.get("workload_output", {}),
        )
        if spec is not None:
            key_names = spec.key_names()
        else:  # a whole program: its text says which key parts are user and kernel stacks
            key_names = program_key_names(meta.program, result.output)
        columns = spec.frame_columns() if spec is not None else {}
        done = finish(result, key_names, meta, path, report, plots, columns)
    return done.check() if check else done



def _nothing_attached(spec: ProbeSpec, probes: int | None) -> HarnessError | None:
    """A spec's program is BEGIN and one probe, so "Attaching 1 probe" means the probe matched
    nothing: bpftrace 0.17 goes on with BEGIN alone (a uprobe on a function the binary does
    not have), where later releases refuse. The run's output is kept; it is not a result."""
    if probes is None or probes >= 2:
        return None
    listing = spec.probe.text().rsplit(":", 1)[0] + ":*"
    return UnknownProbe(
        f"{spec.probe.text()} matched nothing: bpftrace attached {probes} probe (BEGIN alone), "
        "so no event could be counted",
        f"check the name; `bpftrace -l '{listing}'` lists what exists",
    )



def durations(result: RunResult, began: float, spawn: float) -> dict[str, float | None]:
    """Monotonic seconds per phase of one run (see results/README.md). The runner's clock may be
    a guest's: only differences of its own readings are used."""
    traced = None if result.attached is None else result.stopped - result.attached
    parse = result.extra.get("parse_s")
    return {
        "setup_s": round(spawn - began, 6),
        "attach_s": result.time_to_attached,
        "run_s": traced,
        "stop_s": result.extra.get("stop_s"),
        "parse_s": float(parse) if parse is not None else None,
        "total_s": round(time.monotonic() - began, 6),
    }


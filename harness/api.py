"""The library behind `harness run` and `harness crosscheck`, for notebooks, scripts and the CLI.

    >>> import harness
    >>> t = harness.trace("ktrace")
    >>> t.frames["@stacks"].head()
    >>> harness.crosscheck("ktrace").passed
    True

Everything a run decides (which attach type, the marker, what bounds it, what run.json records,
where the run directory goes) is decided here, so the CLI only parses arguments and prints.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness import arguments
from harness.compare.objects import OneObjectPerAttach
from harness.errors import HarnessError, UsageError
from harness.progress import Progress, silent

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare.crosscheck import CrosscheckResult
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.capabilities import Capabilities
    from harness.host.runner import RunResult
    from harness.lanes.base import Lane
    from harness.output.columns import Table
    from harness.output.model import Output
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan

Out = Path | str | Literal[False] | None


RUN_SCHEMA = 2  # run.json's `schema`: 2 is the structured form documented in results/README.md
ENDED_BY = ("workload-exit", "duration", "program-exit", "ctrl-c", "signal", "error")


@dataclass
class RunMeta:
    """What run.json holds for one `trace`: the inputs, the choices made, and how it went.

    Field by field in results/README.md. `spec` is the ProbeSpec that ran (None for a whole
    program); run.json stores it as `spec.to_dict()`, which `ProbeSpec.from_dict` reads back.
    Times: `started_at`/`ended_at` are ISO-8601 UTC wall-clock strings, `durations` are
    monotonic seconds per phase, so a clock step during a run cannot make them lie.
    """

    command: str
    target: str
    spec: ProbeSpec | None
    program: str | None
    marker: str
    attach: str
    attach_reason: str
    capabilities: dict[str, Any]
    workload: list[str] | None
    duration_s: float | None
    timeout_s: float
    workload_status: int | None
    probes: int | None
    exit_status: int | None
    ended_by: str
    error: str | None
    printed_lines: list[str]
    diagnostics: str
    started_at: str
    ended_at: str
    durations: dict[str, float | None]
    bpftrace: dict[str, Any] = field(default_factory=dict)  # which release ran, from where
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lane: dict[str, Any] = field(default_factory=lambda: {"name": "host"})
    # the spec's maps that got no entry: their CSV holds the header only
    no_events: list[str] = field(default_factory=list)
    again_of: str | None = None  # the run directory `harness run --again` repeated
    # bytes the workload wrote to stdout/stderr and how many were cut (workload.*.txt)
    workload_output: dict[str, Any] = field(default_factory=dict)
    # per map, per printing: the entries and value total bpftrace printed (harness.output.printed)
    printed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # where a CSV, .folded file or flame page disagrees with `printed` (one line each)
    printed_differences: list[str] = field(default_factory=list)
    schema: int = RUN_SCHEMA

    def as_dict(self) -> dict[str, Any]:
        """run.json's content: plain JSON data, the spec as its dict."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spec"] = self.spec.to_dict() if self.spec is not None else None
        return data


@dataclass
class Trace:
    """One traced run: a frame per map, the parsed output, its run.json, its run directory.

    `error` is the typed error that cut the run short (None when it ended normally); what was
    gathered before it is still in `frames` and `output`. `notes` are non-fatal remarks (a report
    that could not be written). `columns` are the spec's maps and their columns: a map bpftrace
    never printed (it saw no event) still gets an empty frame and table with those columns.
    """

    output: Output | None
    meta: RunMeta
    path: Path | None
    error: HarnessError | None = None
    notes: list[str] = field(default_factory=list)
    key_names: Mapping[str, Sequence[str]] = field(default_factory=dict)
    workload_stderr: str = ""  # the last of it names a failing workload's cause
    columns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    _frames: dict[str, pd.DataFrame] | None = field(default=None, repr=False)
    _tables: dict[str, Table] | None = field(default=None, repr=False)

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """A DataFrame per map, built on first use: pandas is imported only when asked for."""
        if self._frames is None:
            import pandas as pd

            from harness.output.frames import to_frames

            out = self.output
            self._frames = to_frames(out, self.key_names) if out is not None else {}
            for name in self._missing(self._frames):
                self._frames[name] = pd.DataFrame(columns=list(self.columns[name]))
        return self._frames

    @property
    def tables(self) -> dict[str, Table]:
        """The same maps as plain-Python columns (harness.output.columns), no pandas."""
        if self._tables is None:
            from harness.output.columns import Table, to_tables

            out = self.output
            self._tables = to_tables(out, self.key_names) if out is not None else {}
            for name in self._missing(self._tables):
                self._tables[name] = Table({c: [] for c in self.columns[name]})
        return self._tables

    def _missing(self, have: Mapping[str, object]) -> list[str]:
        """The spec's maps bpftrace did not print (none when nothing was parsed at all)."""
        return [n for n in self.columns if n not in have] if self.output is not None else []

    def check(self) -> Trace:
        """Raise the run's error, or a workload's non-zero exit, as a typed error; else self."""
        if self.error is not None:
            raise self.error
        status = self.meta.workload_status
        if status not in (0, None):
            where = f"partial results are in {self.path}" if self.path else "see trace.frames"
            said = self.workload_stderr.strip().splitlines()[-1:]
            raise HarnessError(
                f"the workload exited with status {status}"
                + (f" ({said[0].strip()[:200]})" if said else ""),
                f"run it by hand; {where}",
            )
        return self


def _workload_argv(workload: str | Sequence[str] | None) -> list[str] | None:
    """A shell-quoted string or an argv list -> argv; '' is a usage error, None means none."""
    if workload is None:
        return None
    if isinstance(workload, str):
        try:
            argv = shlex.split(workload)
        except ValueError as err:
            raise UsageError(
                f"cannot split the workload command: {err}", "balance its quotes"
            ) from None
    elif isinstance(workload, Sequence) and all(
        isinstance(w, str | os.PathLike) for w in workload
    ):
        argv = [os.fspath(w) for w in workload]  # type: ignore[misc]
    else:
        raise UsageError(
            f"workload={workload!r:.60} is neither a command string nor a list of strings",
            "pass e.g. workload='ping -c1 ::1' or workload=['ping', '-c1', '::1']",
        )
    if not argv:
        raise UsageError("the workload is empty", "pass a command, e.g. workload='ping -c1 ::1'")
    if not argv[0].strip():
        raise UsageError("the workload's program (its first word) is empty",
                         "pass a command, e.g. workload=['ping', '-c1', '::1']")
    for i, word in enumerate(argv):
        arguments.no_nul(f"workload word {i}", word)
    return argv


def spec_options(probe: str, options: Mapping[str, Any]) -> ProbeSpec:
    """A probe line plus the CLI's spec options given as keywords -> ProbeSpec.

    Keywords are the CLI flags with `_` for `-` (`count_by="kstack"`, `arg="skb=struct sk_buff *"`,
    `filter=...`, `hist=...`, `by=...`, `pid=`, `comm=`, `cgroup=`, `workload_pid=True`); options
    that repeat on the command line take a string or a list of strings (harness.spec.options).
    """
    from harness.spec.options import SpecOptions

    return SpecOptions.from_keywords(options).to_spec(probe)


def new_marker(prefix: str = "KTRACE_READY") -> str:
    """A marker unique to this run: the program's BEGIN prints it once every probe is live."""
    return f"{prefix}_{int(time.time() * 1000)}"


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
            import threading

            threading.Thread(target=load, name="warm-report", daemon=True).start()
        if on_progress is not None:
            on_progress(elapsed)

    return tick


def trace(
    target: str,
    *,
    workload: str | Sequence[str] | None = None,
    duration: float | None = None,
    lane: str | Lane = "host",
    attach: str | None = None,
    out: Out = None,
    count: int = 100,
    sizes: str = "1,100,1000",
    timeout: float = 60.0,
    report: bool = True,
    plots: bool = False,
    check: bool = True,
    on_progress: Callable[[float], None] | None = None,
    bpftrace: str | None = None,
    force: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    progress: Progress | None = None,
    frequency: int | None = None,
    **spec_opts: Any,
) -> Trace:
    """Generate, run and parse one bpftrace program around a workload.

    target: a catalog name (`ktrace`, `syscalls`), a probe such as `kprobe:udp_send_skb` (shaped
        by `spec_opts`), or a whole bpftrace program (run as written, plus a BEGIN marker).
    workload: the command to trace, as a shell string or an argv list; a catalog entry brings its
        own (sized by `count` datagrams of `sizes` bytes).
    duration: stop after this many seconds (a run needs a workload, a duration, or both).
    lane: where the kernel under test is: `host` (the running kernel), `vm` or `vm:6.12` (a
        Debian guest booted once per process and reused; see harness.lanes), or a Lane object.
    attach: force `kprobe`, `kfunc` or `tracepoint` instead of the capability probe's choice.
    out: the run directory; None makes results/run-<UTC time>/, False writes nothing. It is
        checked before tracing: a file, an unwritable place, or a non-empty directory that is
        not an earlier run of the same target is refused (`force` replaces its contents).
    timeout: seconds to wait for bpftrace to attach.
    report: also write summary.md, folded stacks and flame graphs into the run directory.
    plots: with report, also draw histogram PNGs (matplotlib; `harness report DIR` draws them
        later, so a quick run need not pay for it).
    check: raise the run's typed error (after writing what was gathered); False leaves it in
        `Trace.error` for the caller (the CLI prints the tables first). Failures before anything
        was gathered (bad input, a probe that cannot attach) raise either way.
    on_progress: called with the seconds since attach, about every 50 ms while the run lasts.
    bpftrace: the release to run: None or "system" (the installed one), its version ("0.17"),
        "0.27" or "latest" (a Debian root built on first use; `harness doctor` lists them).
        Codegen writes the program for that release.
    on_plan: called with the Plan (attach choice, program text) before anything starts (`-v`).
    progress: hears the lane's long steps (a VM guest's kernel fetch and boot, the run in the
        guest; harness.progress); None reports nowhere.
    frequency: the `profile` entry's sampling rate in Hz (default 99).
    spec_opts: for a probe target, the CLI's spec flags as keywords (`count_by="kstack"`,
        `arg="skb=struct sk_buff *"`, `hist="skb->len"`, `filter=...`, `workload_pid=True`);
        for a catalog entry, the filters `pid`, `comm` and `cgroup` (`profile` and `offcpu`
        watch the workload's process, else `pid`'s, else every CPU).
    """
    began = (time.time(), time.monotonic())
    arguments.seconds("timeout", timeout, "60")
    _run_options(lane=lane, out=out, bpftrace=bpftrace, progress=progress, on_plan=on_plan,
                 on_progress=on_progress, report=report, plots=plots, check=check, force=force)
    # A whole program needs none of the spec machinery: it is imported where a spec is made.
    from harness.host.bpftrace_versions import resolve

    tracer = resolve(bpftrace)
    equivalents, argv = _request(
        target, workload, duration, attach, count, sizes, spec_opts, frequency
    )
    return _run(
        target,
        equivalents,
        attach=attach,
        reason=None,
        argv=argv,
        duration=duration,
        lane=lane,
        tracer=tracer,
        out=out,
        force=force,
        timeout=timeout,
        report=report,
        plots=plots,
        check=check,
        on_progress=on_progress,
        began=began,
        on_plan=on_plan,
        progress=progress,
    )


ATTACH_CHOICES = ("kprobe", "kfunc", "tracepoint")


def _udp_workload(count: Any, sizes: Any) -> None:
    """`count` and `sizes` of the catalog's UDP workload, checked before it is started."""
    from harness.workloads.udp_send import parse_sizes

    arguments.integer("count", count, 0, "100")
    arguments.text("sizes", sizes, "'1,100,1000'")
    try:
        parse_sizes(sizes)
    except SystemExit as err:
        raise UsageError(
            f"sizes={sizes!r:.60} is not a list of payload sizes "
            f"({str(err).removeprefix('udp_send: ')})",
            "pass byte counts from 0 to 65507, e.g. sizes='1,100,1000'",
        ) from None


def _run_options(
    *, lane: Any, out: Any, bpftrace: Any, progress: Any = None, on_plan: Any = None,
    on_progress: Any = None, **flags: Any,
) -> None:
    """The checks every run shares: where, which release, callbacks and flags."""
    arguments.lane(lane)
    arguments.out(out)
    arguments.release(bpftrace)
    for name, value in (("progress", progress), ("on_plan", on_plan),
                        ("on_progress", on_progress)):
        arguments.callback(name, value)
    for name, value in flags.items():
        arguments.flag(name, value)


def _request(
    target: str,
    workload: str | Sequence[str] | None,
    duration: float | None,
    attach: str | None,
    count: int,
    sizes: str,
    spec_opts: Mapping[str, Any],
    frequency: int | None = None,
) -> tuple[dict[str, ProbeSpec], list[str] | None]:
    """The checked inputs of a run: the target's specs by attach type (none for a whole
    program) and the workload's argv. Nothing here touches the machine."""
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
    _udp_workload(count, sizes)
    argv = _workload_argv(workload)
    equivalents: dict[str, ProbeSpec] = {}
    if "{" in target:
        if spec_opts or attach:
            raise UsageError(
                "spec options and attach apply to a probe or catalog name, not a whole program",
                "write them into the program instead",
            )
        from harness.spec.literal import calls_exit

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
    import dataclasses

    if not filters and (watch_workload or not spec.workload_pid):
        return spec
    workload_pid = spec.workload_pid and watch_workload and filters.get("pid") is None
    return dataclasses.replace(spec, workload_pid=workload_pid, **filters)


def _run(
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
    from harness.lanes.registry import get_lane

    machine = get_lane(lane)
    machine.progress = progress or silent
    caps = machine.capabilities()
    tracer = machine.bpftrace(tracer)
    chosen = _plan(target, equivalents, argv, attach, reason, caps, machine, tracer)
    if on_plan is not None:
        on_plan(chosen)
    spec, attach_used, reason, marker = chosen.spec, chosen.attach, chosen.reason, chosen.marker
    programs: list[str] = []
    make_program: str | Callable[[int | None], str]
    if spec is None:
        make_program = chosen.program()
        programs.append(make_program)
    else:

        def program_for(pid: int | None) -> str:
            programs.append(chosen.program(pid))
            return programs[-1]

        make_program = program_for
    ticking = _warming_report(on_progress, report)
    # bpftrace names user frames when it prints, after a workload has exited: on the host the
    # workload's map is read while it runs, to name them (when every user stack is its own).
    user_frames = None
    if chosen.needs_pid and machine.name == "host":
        from harness.host.usyms import WorkloadFrames

        user_frames = WorkloadFrames()
        make_program, ticking = user_frames.program(make_program), user_frames.ticking(ticking)
    path = _claim(out, "run", target, force)
    spawn = time.monotonic()
    with _unclaimed_on_failure(path if out is None else None):
        result = machine.run_bpftrace(
            make_program,
            marker,
            workload=argv,
            duration=duration,
            timeout=timeout,
            on_progress=ticking,
            bpftrace=tracer.command,
        )
    from harness.host.lifetime import shielded

    # From here a Ctrl-C waits until what was gathered is written (then exits 128+N).
    with shielded(deliver=True):
        if user_frames is not None:
            user_frames.apply(result.output)
        if spec is not None and result.error is None:
            result.error = _nothing_attached(spec, result.probes)
        from harness.output.printed import printed
        from harness.report.rundir import utc_iso

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
            durations=_durations(result, began[1], spawn),
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
            from harness.output.stacks import program_key_names

            key_names = program_key_names(meta.program, result.output)
        columns = spec.frame_columns() if spec is not None else {}
        done = _finish(result, key_names, meta, path, report, plots, columns)
    return done.check() if check else done



def _nothing_attached(spec: ProbeSpec, probes: int | None) -> HarnessError | None:
    """A spec's program is BEGIN and one probe, so "Attaching 1 probe" means the probe matched
    nothing: bpftrace 0.17 goes on with BEGIN alone (a uprobe on a function the binary does
    not have), where later releases refuse. The run's output is kept; it is not a result."""
    if probes is None or probes >= 2:
        return None
    from harness.host.runner import UnknownProbe

    listing = spec.probe.text().rsplit(":", 1)[0] + ":*"
    return UnknownProbe(
        f"{spec.probe.text()} matched nothing: bpftrace attached {probes} probe (BEGIN alone), "
        "so no event could be counted",
        f"check the name; `bpftrace -l '{listing}'` lists what exists",
    )


def _plan(
    target: str,
    equivalents: Mapping[str, ProbeSpec],
    argv: Sequence[str] | None,
    attach: str | None,
    reason: str | None,
    caps: Capabilities,
    machine: Lane,
    tracer: Bpftrace,
) -> Plan:
    """The attach choice and the program for this lane and release (harness.spec.plan). A
    whole program needs none of the spec machinery, nor the kernel's symbols (read only for a
    kernel function probe)."""
    from harness.spec.plan import Plan

    marker = new_marker()
    release = f"{tracer.version_text} ({tracer.origin})"
    workload = tuple(argv) if argv else None
    if not equivalents:
        return Plan(target, None, "as written", reason or "literal program", marker,
                    tracer.version, release, literal=target, workload=workload)
    if attach:
        attach_used, reason = attach, reason or "chosen with --attach"
    else:
        from harness.host.capabilities import choose_attach

        attach_used, reason = choose_attach(equivalents, caps)
    from harness.host.symbols import probe_symbol

    spec = equivalents[attach_used]
    return Plan(target, spec, attach_used, reason, marker, tracer.version, release,
                symbol=probe_symbol(spec, machine.kallsyms), workload=workload)


def plan(
    target: str,
    *,
    workload: str | Sequence[str] | None = None,
    duration: float | None = None,
    lane: str | Lane = "host",
    attach: str | None = None,
    count: int = 100,
    sizes: str = "1,100,1000",
    bpftrace: str | None = None,
    twin: bool = True,
    progress: Progress | None = None,
    frequency: int | None = None,
    **spec_opts: Any,
) -> Plan:
    """What `trace` with the same arguments would run, without running it (`--dry-run`): the
    attach type and why, and the program text as it runs (WORKLOAD_PID standing for a pid
    known only once the workload starts). It reads the lane's capabilities and kernel symbols
    and the bpftrace version, no more; a VM lane boots its guest for them. `twin` also
    generates the libbpf C twin where the spec is in its subset (else `Plan.twin_note`)."""
    from harness.host.bpftrace_versions import resolve
    from harness.lanes.registry import get_lane

    _run_options(lane=lane, out=False, bpftrace=bpftrace, progress=progress, twin=twin)
    tracer = resolve(bpftrace)
    equivalents, argv = _request(
        target, workload, duration, attach, count, sizes, spec_opts, frequency
    )
    machine = get_lane(lane)
    machine.progress = progress or silent
    caps = machine.capabilities()
    chosen = _plan(target, equivalents, argv, attach, None, caps, machine, machine.bpftrace(tracer))
    return with_twin(chosen) if twin else chosen


def with_twin(chosen: Plan) -> Plan:
    """The plan with its generated libbpf C twin, or with the reason there is none."""
    import dataclasses

    if chosen.twin_c is not None or chosen.twin_note:
        return chosen
    if chosen.spec is None:
        return dataclasses.replace(chosen, twin_note="a whole bpftrace program has no twin")
    from harness.compare.crosscheck import twin_program

    try:
        return dataclasses.replace(chosen, twin_c=twin_program(chosen.spec).text)
    except HarnessError as err:
        return dataclasses.replace(chosen, twin_note=str(err))


def again(
    run: Path | str,
    *,
    out: Out = None,
    timeout: float | None = None,
    report: bool = True,
    plots: bool = False,
    check: bool = True,
    on_progress: Callable[[float], None] | None = None,
    force: bool = False,
    on_plan: Callable[[Plan], None] | None = None,
    progress: Progress | None = None,
) -> Trace:
    """Run a recorded run again from its run.json, into a new run directory.

    run: a run directory written by `trace` / `harness run` (results/<run-id>).
    The same spec (read back with `ProbeSpec.from_dict`) or whole program, workload, duration,
    bpftrace release and lane are used, so the program text is the same except for the run's
    own marker and, when the spec filters on the workload's pid, that pid.
    out, report, plots, check, on_progress, force, on_plan, progress: as in `trace`; timeout: as in
        `trace`, default the recorded one.
    """
    from harness.host.bpftrace_versions import resolve

    began = (time.time(), time.monotonic())
    run = arguments.path("run", run, "'results/run-20261127T090622Z'")
    arguments.optional_seconds("timeout", timeout, "60")
    _run_options(lane="host", out=out, bpftrace=None, progress=progress, on_plan=on_plan,
                 on_progress=on_progress, report=report, plots=plots, check=check, force=force)
    rec = _recorded(run)
    return _run(
        rec.target,
        {rec.spec.attach_type: rec.spec} if rec.spec is not None else {},
        attach=rec.spec.attach_type if rec.spec is not None else None,
        reason=f"as recorded in {run / 'run.json'} ({rec.reason})",
        argv=rec.argv,
        duration=rec.duration,
        lane=rec.lane,
        tracer=resolve(rec.release),
        out=out,
        force=force,
        timeout=rec.timeout if timeout is None else timeout,
        report=report,
        plots=plots,
        check=check,
        on_progress=on_progress,
        began=began,
        again_of=str(run),
        on_plan=on_plan,
        progress=progress,
    )


@dataclass
class _Recorded:
    """What `again` takes from a run.json, each field checked as `trace` checks its argument."""

    target: str
    spec: ProbeSpec | None
    argv: list[str] | None
    duration: float | None
    timeout: float
    lane: str
    release: str | None
    reason: str


def _recorded(run: Path) -> _Recorded:
    """Read and check run.json: a hand-edited or damaged field is a one-line error naming it,
    and a run that nothing would bound (no workload, no duration, no exit()) is refused, as the
    CLI refuses it."""
    import json

    from harness.spec.model import ProbeSpec

    where = run / "run.json"
    fix = "pass a results/<run-id> directory written by `harness run`"
    try:
        meta = json.loads(where.read_text())
    except FileNotFoundError:
        raise UsageError(f"{run} holds no run.json: it is not a harness run", fix) from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {where}: {err}", fix) from None
    if not isinstance(meta, dict) or meta.get("schema") != RUN_SCHEMA or "target" not in meta:
        raise UsageError(
            f"{where} is not a run.json of schema {RUN_SCHEMA} (written by "
            "`harness run` since the structured run.json)",
            "run the target again by hand, e.g. `harness run TARGET`",
        )

    def part(name: str, default: Any) -> dict[str, Any]:
        value = meta.get(name, default)
        if not isinstance(value, dict):
            raise UsageError(f"{name}={value!r:.60} is not an object", "")
        return value

    try:
        target = arguments.text("target", meta["target"], "'ktrace'")
        spec = ProbeSpec.from_dict(meta["spec"]) if meta.get("spec") is not None else None
        if spec is None and "{" not in target:
            raise UsageError("it has neither a spec nor a whole program", "")
        argv = _workload_argv(meta.get("workload"))
        duration = arguments.optional_seconds("duration_s", meta.get("duration_s"))
        timeout = arguments.seconds("timeout_s", meta.get("timeout_s", 60.0), "60")
        lane = arguments.lane(part("lane", {}).get("name", "host"))
        release = arguments.release(part("bpftrace", {}).get("name"))
    except UsageError as err:
        raise UsageError(
            f"{where}: {err.cause}", "repair that field, or run the target again by hand"
        ) from None
    if argv is None and duration is None and spec is None:
        from harness.spec.literal import calls_exit

        bounded = calls_exit(target)
    else:
        bounded = argv is not None or duration is not None
    if not bounded:
        raise UsageError(
            f"{where} records no workload, no duration_s and no exit(): nothing bounds the run",
            "run the target again by hand with --workload CMD or --duration S",
        )
    return _Recorded(target, spec, argv, duration, timeout, lane, release,
                     str(meta.get("attach_reason")))


def _durations(result: RunResult, began: float, spawn: float) -> dict[str, float | None]:
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


def _claim(out: Out, kind: str, target: str, force: bool) -> Path | None:
    """Where the run will be written, settled before tracing (None: nowhere, out=False)."""
    from harness.report.rundir import claim_run_dir

    if out is False:
        return None
    return claim_run_dir(Path(out) if out is not None else None, kind, target, force=force)


@contextlib.contextmanager
def _unclaimed_on_failure(path: Path | None) -> Iterator[None]:
    """A run that fails before it gathered anything leaves no empty run directory behind."""
    try:
        yield
    except BaseException:
        if path is not None:
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise


def _finish(
    result: RunResult,
    key_names: Mapping[str, Sequence[str]],
    meta: RunMeta,
    path: Path | None,
    report: bool,
    plots: bool = False,
    columns: Mapping[str, Sequence[str]] | None = None,
) -> Trace:
    """The Trace; its run directory (and report) unless path is None, written from plain
    tables so that no pandas is imported unless a caller reads `Trace.frames`.

    If the directory cannot be written after all, the run is kept in a temporary directory and
    the error naming it becomes the Trace's error (after the run's own, if any)."""
    from harness.report.rundir import write_tables, write_workload_output, written_or_kept

    done = Trace(result.output, meta, None, result.error, key_names=key_names,
                 columns=columns or {}, workload_stderr=result.extra.get("workload_stderr", ""))
    if result.output is not None:
        meta.no_events = [n for n, t in done.tables.items() if n in done.columns and not len(t)]
    if path is None:
        return done
    def write(where: Path) -> Path:
        write_tables(where, done.tables, meta.as_dict(), stdout=result.stdout,
                     stderr=result.stderr)
        return write_workload_output(where, result.extra)

    done.path, write_error = written_or_kept(write, path)
    if write_error is not None:
        if done.error is None:
            done.error = write_error
        else:
            done.notes.append(str(write_error))
    if report:
        try:
            from harness.report.summary import write_report

            write_report(done.path, plots=plots)
        except (ImportError, HarnessError) as err:
            done.notes.append(f"report not written: {err}")
    _check_printed(done, meta)
    return done


def _check_printed(done: Trace, meta: RunMeta) -> None:
    """The invariant of issue 18 on this run: every map's table, CSV, .folded file and flame
    page hold the entries and totals bpftrace printed. Differences go to run.json
    (`printed_differences`) and to the notes the CLI prints on stderr."""
    if done.path is None or not meta.printed:
        return
    from harness.report.rundir import rewrite_meta
    from harness.report.totals import check_run_dir

    try:
        meta.printed_differences = check_run_dir(done.path, meta.printed, done.tables)
    except (OSError, ValueError, HarnessError) as err:
        meta.printed_differences = [f"the printed totals could not be checked: {err}"]
    if meta.printed_differences:
        done.notes += [f"not as printed: {line}" for line in meta.printed_differences]
        try:
            rewrite_meta(done.path, meta.as_dict())
        except OSError as err:
            done.notes.append(f"run.json not updated with the differences: {err}")


@dataclass
class MapVerdict:
    """One compared map: what was compared, whether both tracers agree, the rows that differ."""

    what: str
    equal: bool
    diff: pd.DataFrame  # columns key, bpftrace, libbpf: one row per differing key


@dataclass
class Crosscheck:
    """bpftrace and the libbpf twin on the same events: per-map verdicts and both sides' frames."""

    attach: str
    reason: str
    maps: dict[str, MapVerdict]
    bpftrace: dict[str, pd.DataFrame]
    libbpf: dict[str, pd.DataFrame]
    meta: dict[str, Any]
    bpf_obj_sha256: str
    path: Path | None

    @property
    def passed(self) -> bool:
        """True when every compared map is equal."""
        return all(v.equal for v in self.maps.values())

    def verdict(self) -> dict[str, Any]:
        """What verdict.json holds."""
        ended_by = self.meta.get("ended_by", "workload-exit")
        return {
            # Cut short by Ctrl-C/SIGTERM, the maps hold what each side had seen: no verdict.
            "passed": self.passed and ended_by == "workload-exit",
            "ended_by": ended_by,
            "spec": self.meta["spec"],  # ProbeSpec.to_dict(), as in run.json
            "kernel": self.meta["kernel"],
            "core_relocations": self.meta["core_relocations"],
            "attach": self.attach,
            "reason": self.reason,
            "bpf_obj_sha256": self.bpf_obj_sha256,
            "maps": [
                {
                    "map": name,
                    "what": v.what,
                    "equal": v.equal,
                    "diff": [
                        [str(k), int(left), int(right)]
                        for k, left, right in v.diff.itertuples(index=False)
                    ],
                }
                for name, v in self.maps.items()
            ],
        }


def crosscheck(
    target: str = "ktrace",
    *,
    lane: str | Lane = "host",
    attach: str | None = None,
    count: int = 200,
    sizes: str = "1,100,1000,1400",
    timeout: float = 60.0,
    out: Out = None,
    prebuilt: Path | None = None,
    libbpf_pid_offset: int = 0,
    workload: str | Sequence[str] | None = None,
    bpftrace: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    **spec_opts: Any,
) -> Crosscheck:
    """Run bpftrace and the libbpf CO-RE twin on the same gated workload and compare exactly.

    target: a catalog entry with a twin (`ktrace`).
    lane: `host`, `vm`, `vm:6.12` or a Lane, as in `trace`; the guest runs the host-built twin.
    attach: force `kprobe`, `kfunc` or `tracepoint` instead of the capability probe's choice.
    count, sizes: datagrams the workload sends and their payload sizes (cycled).
    timeout: seconds to attach and to finish.
    out: the run directory (bpftrace/, libbpf/, verdict.json); None makes
        results/crosscheck-<UTC time>/, False writes nothing.
    prebuilt: a build directory of the twin made elsewhere (one .bpf.o for every kernel).
    libbpf_pid_offset: point the twin at another pid (proves a mismatch is caught).
    workload: for a probe target, the command both tracers watch (default: a getppid() loop for
        syscall tracepoints and uprobes, UDP sends otherwise); both filter on its pid.
    spec_opts: for a probe target, the spec flags as keywords, as in `trace`; the twin is
        generated from the same spec (harness.spec.codegen_c).
    bpftrace: the release to run (None: the installed one; "0.27"/"latest": a cached root).
    progress: hears each long step's phase (harness.progress); None reports nowhere.
    on_plan: called with the Plan (attach choice, bpftrace program, twin C) before the twin is
        built or anything starts (`-v`).
    """
    from harness.compare.crosscheck import run_crosscheck

    arguments.seconds("timeout", timeout, "60")
    _run_options(lane=lane, out=out, bpftrace=bpftrace, progress=progress, on_plan=on_plan,
                 force=force)
    if prebuilt is not None:
        prebuilt = arguments.directory("prebuilt", prebuilt, "Path('build/twin')")
    arguments.integer("libbpf_pid_offset", libbpf_pid_offset, -(1 << 31), "0")
    spec, workload_argv = _crosscheck_request(target, attach, count, sizes, workload, spec_opts)
    path = _claim(out, "crosscheck", target, force)
    with _unclaimed_on_failure(path if out is None else None):
        result = run_crosscheck(
            target,
            spec=spec,
            workload_argv=workload_argv,
            attach=attach,
            count=count,
            sizes=sizes,
            libbpf_pid_offset=libbpf_pid_offset,
            timeout=timeout,
            prebuilt=prebuilt,
            bpftrace=bpftrace,
            lane=lane,
            progress=progress or silent,
            on_plan=on_plan,
        )
    from harness.host.lifetime import shielded
    from harness.host.runner import Interrupted

    with shielded(deliver=True):  # a Ctrl-C now waits until what was gathered is written
        done = _crosscheck_out(result, path)
    if result.interrupted is not None:
        # Stopped by Ctrl-C/SIGTERM: both tracers' partial frames are written; no verdict.
        raise Interrupted(result.interrupted)
    return done


def _crosscheck_request(
    target: str, attach: str | None, count: int, sizes: str,
    workload: str | Sequence[str] | None, spec_opts: Mapping[str, Any],
) -> tuple[ProbeSpec | None, list[str] | None]:
    """A crosscheck's checked inputs: the probe line's spec (None for a catalog entry) and the
    workload's argv."""
    from harness.spec import catalog

    arguments.text("target", target, "'ktrace'")
    arguments.choice("attach", attach, ATTACH_CHOICES)
    _udp_workload(count, sizes)
    if count < 1 and workload is None:
        raise UsageError(
            f"count {count} sends no datagram, so there is nothing to compare", "pass 1 or more"
        )
    spec = None if target in catalog.names() else spec_options(target, spec_opts)
    if spec is None and spec_opts:
        raise UsageError(f"spec options given for catalog entry {target!r}", "drop them")
    if spec is None and workload is not None:
        raise UsageError(
            f"catalog entry {target!r} brings its own workload, so --workload would be ignored",
            "shape it with --count/--sizes, or give a probe line to watch your own command",
        )
    return spec, _workload_argv(workload)


def plan_crosscheck(
    target: str = "ktrace",
    *,
    lane: str | Lane = "host",
    attach: str | None = None,
    count: int = 200,
    sizes: str = "1,100,1000,1400",
    workload: str | Sequence[str] | None = None,
    bpftrace: str | None = None,
    progress: Progress | None = None,
    **spec_opts: Any,
) -> Plan:
    """What `crosscheck` with the same arguments would run, without building or running
    anything (`--dry-run`): the attach choice and why, the bpftrace program (WORKLOAD_PID
    standing for the gated workload's pid) and the twin's C (`Plan.twin_c`)."""
    from harness.compare import crosscheck as xc
    from harness.host.bpftrace_versions import resolve
    from harness.lanes.registry import get_lane

    _run_options(lane=lane, out=False, bpftrace=bpftrace, progress=progress)
    spec, workload_argv = _crosscheck_request(target, attach, count, sizes, workload, spec_opts)
    machine = get_lane(lane)
    machine.progress = progress or silent
    return xc.plan_crosscheck(
        target, spec, attach, machine, machine.bpftrace(resolve(bpftrace)),
        workload_argv=workload_argv,
        count=count, sizes=sizes,
    ).plan


def _crosscheck_out(result: CrosscheckResult, path: Path | None) -> Crosscheck:
    import json

    import pandas as pd

    from harness.report.rundir import write_run_dir

    maps = {
        c.map_name: MapVerdict(
            c.what, c.equal, pd.DataFrame(c.diff, columns=["key", "bpftrace", "libbpf"])
        )
        for c in result.comparisons
    }
    done = Crosscheck(
        result.attach,
        result.reason,
        maps,
        result.bpftrace_frames,
        result.libbpf_frames,
        result.meta,
        result.build.sha256,
        None,
    )
    if path is None:
        return done
    done.path = path
    write_run_dir(done.path / "bpftrace", result.bpftrace_frames, result.meta,
                  stdout=result.bpftrace_stdout, stderr=result.bpftrace_stderr)
    write_run_dir(done.path / "libbpf", result.libbpf_frames, result.meta)
    (done.path / "program.bt").write_text(result.meta["program"])
    (done.path / "twin.bpf.c").write_text(result.meta["twin_c"])
    (done.path / "verdict.json").write_text(json.dumps(done.verdict(), indent=2) + "\n")
    return done


MATRIX_COLUMNS = (
    "kernel_series",
    "kernel",
    "bpftrace",
    "lane",
    "accel",
    "attach",
    "bpftrace_events",
    "libbpf_events",
    "verdict",
    "versions_agree",
    "core_relocations",
    "bpf_obj_sha256",
    "error",
)


@dataclass
class Matrix(OneObjectPerAttach):
    """What `matrix` found: one row per (kernel, bpftrace release), as matrix.csv holds them.

    rows: dicts keyed by MATRIX_COLUMNS (kernel_series, kernel, bpftrace, lane, accel, attach,
        bpftrace_events, libbpf_events, verdict `pass`/`FAIL`/`error`, versions_agree,
        core_relocations, bpf_obj_sha256, error); a kernel that failed keeps its row.
    path: the matrix directory (matrix.csv, one crosscheck directory per kernel), or None.
    notes: the releases' map-by-map comparison, as lines to print.
    """

    rows: list[dict[str, Any]]
    path: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every kernel passed, one .bpf.o per attach type, every release agreed."""
        agree = all(r["versions_agree"] in ("-", "yes") for r in self.rows)
        return all(r["verdict"] == "pass" for r in self.rows) and (
            self.one_object_per_attach and agree
        )


def matrix(
    target: str = "ktrace",
    *,
    kernels: Sequence[str] = ("6.1", "6.12", "host"),
    count: int = 60,
    timeout: float = 600.0,
    out: Out = None,
    bpftrace: Sequence[str | None] = (None,),
    on_kernel: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> Matrix:
    """`crosscheck` on each kernel, one booted guest per series; a failing kernel keeps its row.

    kernels: Debian series of the VM lane (`6.1`, `6.12`) and/or `host`.
    count: datagrams per crosscheck. timeout: seconds per step in each kernel.
    out: where matrix.csv and one crosscheck directory per kernel go; None makes
        results/matrix-<target>-<UTC time>/, False writes nothing.
    bpftrace: the releases to run on each kernel (None: the system's); with several, each
        kernel's bpftrace frames are compared across them (harness.compare.versions) and a
        differing map is written as <kernel>/versions-A-vs-B/<map>.csv.
    on_kernel: called with each series before its crosscheck starts (progress).
    progress: hears each guest's boot and each crosscheck's phases, as in `crosscheck`.
    """
    from harness.host.runner import Interrupted
    from harness.lanes.debian import SUITES
    from harness.lanes.registry import get_lane
    from harness.report.rundir import new_run_dir

    arguments.text("target", target, "'ktrace'")
    from harness.spec import catalog

    catalog.get(target)  # an unknown entry fails once, not once per kernel
    kernels = arguments.names("kernels", kernels, "['6.1', 'host']")
    bpftrace = arguments.names("bpftrace", bpftrace, "['0.17', '0.27']", none_ok=True)
    arguments.integer("count", count, 1, "60")
    arguments.seconds("timeout", timeout, "600")
    arguments.out(out)
    arguments.callback("on_kernel", on_kernel)
    arguments.callback("progress", progress)
    unknown = [k for k in kernels if k != "host" and k not in SUITES]
    if unknown or not kernels:
        raise UsageError(
            f"unknown kernels: {', '.join(unknown) or '(none given)'}",
            f"choose from: {', '.join([*SUITES, 'host'])}",
        )
    path = None if out is False else Path(out) if out is not None else new_run_dir(
        f"matrix-{target}"
    )
    from harness.host.bpftrace_versions import resolve

    # Unknown names fail before any guest boots, and roots are built here; the system's own
    # release runs as the default, the same binary in a guest.
    chosen = {name: (None if resolve(name).name == "system" else name) for name in bpftrace}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for series in kernels:
        if on_kernel is not None:
            on_kernel(series)
        lane = get_lane("host" if series == "host" else f"vm:{series}")
        runs: list[tuple[str, Crosscheck | None, dict[str, Any]]] = []
        for version in bpftrace:
            sub = None if path is None else path / series
            if sub is not None and version:
                sub = sub / f"bpftrace-{version}"
            try:
                x: Crosscheck | None = crosscheck(
                    target,
                    lane=lane,
                    count=count,
                    timeout=timeout,
                    out=False if sub is None else sub,
                    bpftrace=chosen[version],
                    progress=progress,
                )
                rows.append(_matrix_row(series, x, ""))
            except Interrupted as err:
                # Ctrl-C/SIGTERM: the interrupted crosscheck wrote what it gathered; the
                # rows so far are written too, and nothing more runs.
                rows.append(_matrix_row(series, None, str(err), lane.describe()))
                _matrix_csv(path, rows)
                raise
            except HarnessError as err:
                x = None
                rows.append(_matrix_row(series, None, str(err), lane.describe()))
            runs.append((version or "system", x, rows[-1]))
        if series != "host":
            # One guest at a time: two TCG guests would share the host's cores, and a guest
            # left running beside the next one's boot has been seen to make that boot fail.
            lane.close()
        notes += _compare_versions(runs, None if path is None else path / series)
    _matrix_csv(path, rows)
    return Matrix(rows, path, notes)


def _matrix_csv(path: Path | None, rows: list[dict[str, Any]]) -> None:
    """matrix.csv: one row per kernel and release run (nothing when `path` is None)."""
    import csv

    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    with (path / "matrix.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MATRIX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _compare_versions(
    runs: list[tuple[str, Crosscheck | None, dict[str, Any]]], where: Path | None
) -> list[str]:
    """Each release's bpftrace frames against the first release's, on one kernel; the verdict
    goes into the rows, each differing map into <kernel>/versions-<A>-vs-<B>/<map>.csv."""
    from harness.compare.versions import compare_frames

    notes: list[str] = []
    if len(runs) < 2:
        return notes
    base_label, base, _ = runs[0]
    for label, x, row in runs[1:]:
        if base is None or x is None:
            row["versions_agree"] = "not compared (a run failed)"
            continue
        diffs = compare_frames(base.bpftrace, x.bpftrace, (base_label, label))
        bad = [d for d in diffs if not d.equal]
        row["versions_agree"] = "yes" if not bad else "NO: " + ", ".join(d.map_name for d in bad)
        notes += [
            f"   {base_label} vs {label} {d.map_name}: {'equal' if d.equal else 'DIFFER'} ({d.how})"
            for d in diffs
        ]
        for d in bad:
            notes.append(d.diff.head(20).to_string(index=False))
            if where is not None:
                folder = where / f"versions-{base_label}-vs-{label}"
                folder.mkdir(parents=True, exist_ok=True)
                d.diff.to_csv(folder / f"{d.map_name.lstrip('@') or 'map'}.csv", index=False)
    return notes


def _matrix_row(
    series: str, x: Crosscheck | None, error: str, lane: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    lane = x.meta.get("lane", {}) if x is not None else (lane or {})

    def events(frames: Mapping[str, pd.DataFrame]) -> int | None:
        frame = frames.get("@stacks")
        return None if frame is None else int(frame["value"].sum())

    return {
        "kernel_series": series,
        "kernel": x.meta["kernel"] if x is not None else lane.get("release", ""),
        "bpftrace": x.meta.get("bpftrace", "") if x is not None else "",
        "lane": "host" if series == "host" else "vm",
        "accel": lane.get("accel") or "-",
        "attach": x.attach if x is not None else "",
        "bpftrace_events": events(x.bpftrace) if x is not None else None,
        "libbpf_events": events(x.libbpf) if x is not None else None,
        "verdict": ("pass" if x.passed else "FAIL") if x is not None else "error",
        "versions_agree": "-",
        "core_relocations": " ".join(
            f"{k}@{v}" for k, v in sorted((x.meta["core_relocations"] if x else {}).items())
        ),
        "bpf_obj_sha256": x.bpf_obj_sha256 if x is not None else "",
        "error": error or ("; ".join(k for k, v in (x.maps if x else {}).items() if not v.equal)),
    }

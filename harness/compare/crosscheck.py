"""Run the generated bpftrace program and its generated libbpf CO-RE twin on the same events.

Any spec in the C generator's subset can be cross-checked: a catalog name (`ktrace`) or a probe
line with spec options, exactly like `harness run`. Both tracers filter on the pid of one gated
workload: the workload starts first (its pid known), both tracers attach, and only then is it
released, so both see exactly the same events. Every map is compared exactly (harness.compare.
maps): equal keys and values, stacks frame by frame after symbolisation.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.compare.maps import MapComparison as Comparison
from harness.compare.maps import compare_spec_maps
from harness.errors import CrosscheckError, HarnessError
from harness.paths import workload
from harness.progress import Progress, silent

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare.gather import Gathered
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.capabilities import Capabilities
    from harness.lanes.base import Lane
    from harness.spec.codegen_c import TwinProgram
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan
    from harness.twin.build import BuildOutputs

__all__ = ["Comparison", "CrosscheckError", "CrosscheckResult", "run_crosscheck"]


@dataclass
class CrosscheckResult:
    attach: str
    reason: str
    comparisons: list[Comparison]
    bpftrace_frames: dict[str, pd.DataFrame]
    libbpf_frames: dict[str, pd.DataFrame]
    build: BuildOutputs
    meta: dict[str, Any]
    # bpftrace's raw streams (from the guest in the VM lane): the run directory keeps them, so
    # `harness parse bpftrace/stdout.txt` re-reads exactly what was compared.
    bpftrace_stdout: str = ""
    bpftrace_stderr: str = ""
    # The stop signal that cut the tracing short: the frames hold what was gathered until then.
    interrupted: int | None = None

    @property
    def passed(self) -> bool:
        return all(c.equal for c in self.comparisons)



def default_workload(spec: ProbeSpec, count: int, sizes: str, sockets: int) -> list[str]:
    """What a probe line is cross-checked on when no --workload is given: N getppid() calls
    for a syscall tracepoint or a uprobe, N UDP datagrams on loopback otherwise."""
    target = spec.probe.target
    if spec.probe.kind.startswith("u") or target.startswith("syscalls:"):
        return [sys.executable, str(workload("syscall_loop.py")), "--count", str(count)]
    return [
        sys.executable, str(workload("udp_send.py")), "--no-wait", "--count", str(count),
        "--sizes", sizes, "--sockets", str(sockets),
    ]


def resolve_spec(
    name: str, spec: ProbeSpec | None, attach: str | None, caps: Capabilities | None = None
) -> tuple[ProbeSpec, str, str, str | None]:
    """(spec, attach, why, catalog name) for a catalog entry or a given spec; the spec always
    filters on the workload's pid, which is what makes both tracers see the same events."""
    from harness.spec import catalog

    if spec is None:
        entry = catalog.get(name)
        if attach is None:
            from harness.host.capabilities import capabilities, choose_attach

            attach, reason = choose_attach(entry.equivalents, caps or capabilities())
        else:
            reason = "chosen with --attach"
        if attach not in entry.equivalents:
            raise CrosscheckError(
                f"{name} has no {attach} equivalent", f"use one of {sorted(entry.equivalents)}"
            )
        spec = entry.equivalents[attach]
        cat: str | None = name
    else:
        attach, reason, cat = spec.probe.kind, "the probe line's own type", None
    if spec.pid is None and not spec.workload_pid:
        spec = dataclasses.replace(spec, workload_pid=True)
    return spec, attach, reason, cat


def twin_program(spec: ProbeSpec) -> TwinProgram:
    """The generated twin of a spec on this machine (a tracepoint's layout read from tracefs)."""
    from harness.spec.codegen_c import generate_c
    from harness.twin.generic import read_tracepoint_format

    fmt = read_tracepoint_format(spec.probe) if spec.probe.kind == "tracepoint" else None
    return generate_c(spec, tracepoint_format=fmt)


def prebuilt_key(c_text: str) -> str:
    """The directory name under a prebuilt root that holds the object built from `c_text`."""
    import hashlib

    return "twin-" + hashlib.sha256(c_text.encode()).hexdigest()[:20]


def _twin_build(c_text: str, prebuilt: Path | None) -> tuple[Path, Path, str, str, str]:
    """(object, loader, sha256, arch define, clang warnings): from `prebuilt` when it holds
    this very C text (the VM lane reuses the host's objects), else built here (cached)."""
    from harness.twin.build import build_twin, generic_loader, sha256_file

    given = prebuilt / prebuilt_key(c_text) / "twin.bpf.c" if prebuilt is not None else None
    if given is not None and given.is_file() and given.read_text() == c_text:
        assert prebuilt is not None
        loader = prebuilt / "twinload"
        loader = loader if loader.exists() else generic_loader()
        obj = given.with_name("twin.bpf.o")
        return obj, loader, sha256_file(obj), "(prebuilt)", ""
    built = build_twin(c_text)
    return built.bpf_obj, generic_loader(), built.sha256, built.arch_define, built.warnings


@dataclass
class Planned:
    """A crosscheck settled before it starts: the shared Plan (spec, attach, bpftrace program,
    twin C), the generated twin, the catalog entry it came from, and the lane's capabilities."""

    plan: Plan
    twin: TwinProgram
    catalog: str | None
    caps: Capabilities


def plan_crosscheck(
    name: str,
    spec: ProbeSpec | None,
    attach: str | None,
    machine: Lane,
    tracer: Bpftrace,
    *,
    workload_argv: list[str] | None = None,
    count: int = 200,
    sizes: str = "1,100,1000,1400",
    sockets: int = 3,
) -> Planned:
    """Spec, attach choice, both programs and the workload, from cheap reads of the lane (its
    capabilities and symbols) and of the bpftrace release; nothing is built or started."""
    from harness.host.symbols import probe_symbol
    from harness.spec.plan import Plan

    caps = machine.capabilities()
    spec, attach, reason, cat = resolve_spec(name, spec, attach, caps)
    symbol = probe_symbol(spec, machine.kallsyms)
    twin = twin_program(spec)
    if cat is not None:
        from harness.spec import catalog

        argv = catalog.get(cat).workload_argv(count, sizes) or []
        if argv and argv[1].endswith("udp_send.py"):
            argv += ["--sockets", str(sockets)]
    else:
        argv = workload_argv or default_workload(spec, count, sizes, sockets)
    chosen = Plan(
        name, spec, attach, reason, f"KTRACE_XCHECK_{int(time.time() * 1000)}", tracer.version,
        f"{tracer.version_text} ({tracer.origin})", symbol=symbol, workload=tuple(argv),
        twin_c=twin.text,
    )
    return Planned(chosen, twin, cat, caps)


def run_crosscheck(
    name: str = "ktrace",
    *,
    attach: str | None = None,
    count: int = 200,
    sizes: str = "1,100,1000,1400",
    sockets: int = 3,
    libbpf_pid_offset: int = 0,
    timeout: float = 60.0,
    prebuilt: Path | None = None,
    spec: ProbeSpec | None = None,
    workload_argv: list[str] | None = None,
    bpftrace: str | None = None,
    lane: str | Lane = "host",
    progress: Progress = silent,
    on_plan: Callable[[Plan], None] | None = None,
) -> CrosscheckResult:
    """Run both tracers around one workload and compare every map of the spec.

    `lane` is the kernel under test: the host, or a VM lane's guest, which runs only the two
    tracers and the workload; codegen, the twin's build, parsing and the comparison stay here.

    `spec` (a probe line's spec) replaces the catalog entry `name`. `libbpf_pid_offset`
    deliberately points the twin at another pid: a test uses it to prove a mismatch is caught.
    `prebuilt` is a directory holding a twin built elsewhere (twin.bpf.c, twin.bpf.o).
    `bpftrace` names the release to run (harness.host.bpftrace_versions; None: the system's).
    `progress` hears the phases (building the twin, tracing); it never prints. `on_plan` is
    called with the plan (harness.spec.plan) before anything is built or started.
    """
    from harness.host.bpftrace_versions import resolve
    from harness.lanes.registry import get_lane

    machine = get_lane(lane)
    machine.progress = progress
    tracer = machine.bpftrace(resolve(bpftrace))
    planned = plan_crosscheck(
        name, spec, attach, machine, tracer, workload_argv=workload_argv, count=count,
        sizes=sizes, sockets=sockets,
    )
    if on_plan is not None:
        on_plan(planned.plan)
    chosen, twin, cat, caps = planned.plan, planned.twin, planned.catalog, planned.caps
    assert chosen.spec is not None and chosen.workload is not None
    spec, attach, symbol = chosen.spec, chosen.attach, chosen.symbol
    argv = list(chosen.workload)
    progress("building the twin")
    obj, loader, sha, define, warnings = _twin_build(twin.text, prebuilt)
    marker = chosen.marker
    programs: list[str] = []

    def program_for(pid: int) -> str:
        programs.append(chosen.program(pid))
        return programs[-1]

    started = time.time(), time.monotonic()
    progress("tracing with bpftrace and the twin")
    got = machine.gather(
        program_for,
        marker,
        workload=argv,
        loader=loader,
        obj=obj,
        setting_names=list(twin.settings),
        func=symbol if symbol != spec.probe.target else None,
        pid_offset=libbpf_pid_offset,
        cgroup=spec.cgroup,
        timeout=timeout,
        bpftrace=tracer.command,
    )
    bt_result = got.bpftrace
    program = programs[-1]
    if bt_result.error is not None and got.interrupted is None:
        raise bt_result.error
    from harness.host.lifetime import shielded

    # What was gathered is compared and handed back whole: a stop signal now is held, and
    # the result says it was interrupted (the caller writes it, then stops).
    with shielded() as held:
        return _compared(
            got, spec, twin, machine, tracer, caps, chosen, program, argv, started,
            (obj, loader, sha, define, warnings), cat, held,
        )


def _compared(
    got: Gathered, spec: ProbeSpec, twin: TwinProgram, machine: Lane, tracer: Bpftrace,
    caps: Capabilities, chosen: Plan, program: str, argv: list[str],
    started: tuple[float, float], built: tuple[Path, Path, str, str, str], cat: str | None,
    held: list[int],
) -> CrosscheckResult:
    """Frames of both tracers, the comparison of every map, and the run's meta."""
    from harness.output.frames import to_frames
    from harness.report.rundir import utc_iso
    from harness.twin.build import BuildOutputs
    from harness.twin.generic import counters, twin_frames
    from harness.twin.loader import core_relocations

    bt_result, dumps, log = got.bpftrace, got.dumps, got.log
    obj, loader, sha, define, warnings = built
    attach, reason = chosen.attach, chosen.reason
    key_names = spec.key_names()
    bt_frames = to_frames(bt_result.output, key_names) if bt_result.output is not None else {}
    try:
        lb_frames, dropped = twin_frames(twin, dumps, machine.kallsyms())
    except HarnessError:
        if got.interrupted is None:
            raise
        lb_frames, dropped = {}, 0  # stopped before the loader had its maps: none to keep
    describe = {t.spec_map: t.describe for t in twin.maps}
    comparisons = compare_spec_maps(spec, bt_frames, lb_frames, describe)
    interrupted = got.interrupted or (held[0] if held else None)
    meta = {
        "command": " ".join(sys.argv),
        "catalog": cat,
        "spec": spec.to_dict(),
        "attach": attach,
        "attach_reason": reason,
        "program": program,
        "twin_c": twin.text,
        "twin_clang_warnings": warnings,
        "workload": argv,
        "workload_pid": got.workload_pid,
        "bpf_obj_sha256": sha,
        "arch_define": define,
        "kernel": caps.kernel,
        "bpftrace": tracer.version_text,
        "bpftrace_origin": tracer.origin,
        "libbpf": caps.libbpf,
        "libbpf_lost": dropped,
        "libbpf_insert_races": counters(dumps)[1],
        "core_relocations": core_relocations(log),
        "lane": machine.describe(),
        "started_at": utc_iso(started[0]),
        "ended_at": utc_iso(time.time()),
        "durations": {
            "bpftrace_attach_s": bt_result.time_to_attached,
            "libbpf_attach_s": got.libbpf_attach_s,
            "total_s": round(time.monotonic() - started[1], 6),
        },
    }
    meta["ended_by"] = "workload-exit" if interrupted is None else (
        "ctrl-c" if interrupted == signal.SIGINT else "signal")
    outputs = BuildOutputs(obj, loader, sha, define)
    return CrosscheckResult(
        attach, reason, comparisons, bt_frames, lb_frames, outputs, meta,
        bpftrace_stdout=bt_result.stdout, bpftrace_stderr=bt_result.stderr,
        interrupted=interrupted,
    )

"""The one planner: what a trace or a crosscheck will run, settled before anything starts.

Both go through `settle`: one attach choice (the capability probe's, or the one asked for), one
ready marker (`KTRACE_READY_<ms>`), one Plan (harness.spec.plan) whose program text is what runs
and what a dry run prints. A crosscheck's plan is the same plan of its spec, filtered on the
gated workload's pid, plus the generated twin. Only cheap reads of the lane (its capabilities,
its kernel symbols) and of the bpftrace release happen here; nothing is built or started.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.compare.crosscheck import twin_program
from harness.errors import CrosscheckError, HarnessError
from harness.host.capabilities import capabilities, choose_attach
from harness.host.symbols import probe_symbol
from harness.paths import workload
from harness.spec.plan import Plan

if TYPE_CHECKING:
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.capabilities import Capabilities
    from harness.lanes.base import Lane
    from harness.spec.codegen_c import TwinProgram
    from harness.spec.model import ProbeSpec


def new_marker(prefix: str = "KTRACE_READY") -> str:
    """A marker unique to this run: the program's BEGIN prints it once every probe is live."""
    return f"{prefix}_{int(time.time() * 1000)}"


def choose(
    equivalents: Mapping[str, object], attach: str | None, reason: str | None,
    caps: Capabilities | None,
) -> tuple[str, str]:
    """(attach type, why): the one asked for, else the capability probe's choice (on `caps`,
    read here when not given)."""
    if attach:
        return attach, reason or "chosen with --attach"
    return choose_attach(equivalents, caps if caps is not None else capabilities())


def settle(
    target: str,
    equivalents: Mapping[str, ProbeSpec],
    argv: Sequence[str] | None,
    attach: str | None,
    reason: str | None,
    caps: Capabilities,
    machine: Lane,
    tracer: Bpftrace,
) -> Plan:
    """The attach choice and the program for this lane and release. A whole program (no
    `equivalents`: `target` is its text) needs none of the spec machinery, nor the kernel's
    symbols (read only for a kernel function probe)."""
    marker = new_marker()
    release = f"{tracer.version_text} ({tracer.origin})"
    workload = tuple(argv) if argv else None
    if not equivalents:
        return Plan(target, None, "as written", reason or "literal program", marker,
                    tracer.version, release, literal=target, workload=workload)
    attach_used, reason = choose(equivalents, attach, reason, caps)
    spec = equivalents[attach_used]
    return Plan(target, spec, attach_used, reason, marker, tracer.version, release,
                symbol=probe_symbol(spec, machine.kallsyms), workload=workload)


def with_twin(chosen: Plan) -> Plan:
    """The plan with its generated libbpf C twin, or with the reason there is none."""
    if chosen.twin_c is not None or chosen.twin_note:
        return chosen
    if chosen.spec is None:
        return dataclasses.replace(chosen, twin_note="a whole bpftrace program has no twin")
    try:
        return dataclasses.replace(chosen, twin_c=twin_program(chosen.spec).text)
    except HarnessError as err:
        return dataclasses.replace(chosen, twin_note=str(err))


def resolve_spec(
    name: str, spec: ProbeSpec | None, attach: str | None, caps: Capabilities | None = None
) -> tuple[ProbeSpec, str, str, str | None]:
    """A crosscheck's (spec, attach, why, catalog name) for a catalog entry or a given spec; the
    spec always filters on the workload's pid, which is what makes both tracers see the same
    events."""
    from harness.spec import catalog

    if spec is None:
        entry = catalog.get(name)
        attach, reason = choose(entry.equivalents, attach, None, caps)
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


@dataclass
class Planned:
    """A crosscheck settled before it starts: the Plan (spec, attach, bpftrace program, twin C),
    the generated twin, the catalog entry it came from, and the lane's capabilities."""

    plan: Plan
    twin: TwinProgram
    catalog: str | None
    caps: Capabilities


def settle_crosscheck(
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
    """A crosscheck's plan: its spec (catalog entry or probe line, on the workload's pid) through
    `settle`, the workload both tracers watch, and the generated twin."""
    caps = machine.capabilities()
    spec, attach, reason, cat = resolve_spec(name, spec, attach, caps)
    if cat is not None:
        from harness.spec import catalog

        argv = catalog.get(cat).workload_argv(count, sizes) or []
        if argv and argv[1].endswith("udp_send.py"):
            argv += ["--sockets", str(sockets)]
    else:
        argv = workload_argv or default_workload(spec, count, sizes, sockets)
    chosen = settle(name, {attach: spec}, argv, attach, reason, caps, machine, tracer)
    twin = twin_program(spec)
    chosen = dataclasses.replace(chosen, workload=tuple(argv), twin_c=twin.text)
    return Planned(chosen, twin, cat, caps)

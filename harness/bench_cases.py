"""The benchmarks `harness bench` knows: for each NAME, its workload and the tracers to compare.

`ktrace` is the seed's path (loopback UDP sends seen at udp_send_skb or its tracepoint
equivalent) with the catalog's generated bpftrace program and the libbpf CO-RE twin; `syscall`
is a tight getppid() loop seen at its syscall tracepoint, where per-event probe cost dominates.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.bench import Tracer, Workload
from harness.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
READY = "KTRACE_BENCH_READY"


@dataclass
class Case:
    workload: Workload
    tracers: list[Tracer]
    attach: str
    notes: list[str] = field(default_factory=list)


def results_root() -> Path:
    from harness.results import results_root as root

    return root()


def _bpftrace_binary() -> str:
    found = shutil.which("bpftrace")
    if found is None:
        raise UsageError("bpftrace is not installed", "run scripts/setup.sh")
    return found


def _count_map(out: str, name: str) -> int:
    """Sum of an int map's values in bpftrace's text output (keyed or not)."""
    from harness.frames import to_frames
    from harness.parse import parse_text

    frames = to_frames(parse_text(out))
    frame = frames.get(name)
    if frame is None:
        return 0
    return int(frame["value"].sum())


def syscall_case(events: int, modes: Sequence[str]) -> Case:
    """getppid() loop (C, built with cc on first use) at tracepoint:syscalls:sys_enter_getppid."""
    workload = Workload(
        [sys.executable, str(SCRIPTS / "syscall_loop.py"), "--count", str(events)],
        events,
        f"{events} getppid() syscalls (scripts/syscall_loop.py)",
    )
    bpftrace = _bpftrace_binary()

    def argv(pid: int) -> list[str]:
        program = (
            f'BEGIN {{ printf("{READY}\\n"); }}\n'
            f"tracepoint:syscalls:sys_enter_getppid /pid == {pid}/ {{ @calls = count(); }}\n"
        )
        return [bpftrace, "-e", program]

    tracers = []
    notes = []
    if "bpftrace" in modes:
        tracers.append(
            Tracer(
                "bpftrace", argv, lambda line: READY in line, lambda out: _count_map(out, "@calls")
            )
        )
    if "libbpf" in modes:
        notes.append(
            "- libbpf: no CO-RE twin exists for the syscall probe; only bpftrace is compared."
        )
    return Case(workload, tracers, "tracepoint", notes)


def bpftrace_tracer(name: str, attach: str, count_map: str) -> Tracer:
    """The catalog entry's generated program for `attach`, filtered to the workload pid by codegen;
    events are the sum of `count_map` in what bpftrace prints on SIGINT."""
    from harness import catalog, codegen

    spec = catalog.get(name).equivalents[attach]
    version = codegen.bpftrace_version()
    bpftrace = _bpftrace_binary()
    marker = f"{READY}_{os.getpid()}"

    def argv(pid: int) -> list[str]:
        return [bpftrace, "-e", codegen.generate(spec, attach, version, marker, pid=pid)]

    return Tracer(
        "bpftrace", argv, lambda line: marker in line, lambda out: _count_map(out, count_map)
    )


def libbpf_tracer(attach: str) -> Tracer:
    """The CO-RE twin's loader (built, or from the build cache) on `attach`, filtered to pid."""
    from harness.libbpf_build import build
    from harness.libbpf_run import parse_loader_output

    loader = build().loader

    def count(out: str) -> int:
        return sum(parse_loader_output(out, attach).stacks.values())

    return Tracer(
        "libbpf",
        lambda pid: [str(loader), "--attach", attach, "--pid", str(pid)],
        lambda line: line.startswith("ready"),
        count,
    )


def ktrace_case(events: int, modes: Sequence[str]) -> Case:
    """Loopback UDP sends (scripts/udp_send.py) seen at udp_send_skb or its tracepoint twin."""
    from harness import catalog
    from harness.kernel import capabilities, choose_attach

    attach, reason = choose_attach(catalog.get("ktrace").equivalents, capabilities())
    workload = Workload(
        [
            sys.executable,
            str(SCRIPTS / "udp_send.py"),
            "--count",
            str(events),
            "--sizes",
            "1,100,1000",
        ],
        events,
        f"{events} loopback UDP sends (scripts/udp_send.py)",
        gate=(),
    )
    tracers = []
    if "bpftrace" in modes:
        tracers.append(bpftrace_tracer("ktrace", attach, "@stacks"))
    if "libbpf" in modes:
        tracers.append(libbpf_tracer(attach))
    return Case(workload, tracers, attach, [f"- attach type: {attach} ({reason})."])


CASES = {"ktrace": ktrace_case, "syscall": syscall_case}


def build(name: str, events: int, modes: Sequence[str]) -> Case:
    unknown = set(modes) - {"bpftrace", "libbpf"}
    if unknown:
        raise UsageError(f"unknown mode {sorted(unknown)[0]!r}", "use --modes bpftrace,libbpf")
    if events < 1:
        raise UsageError(f"--events {events} is below 1", "pass a positive event count")
    builder = CASES.get(name)
    if builder is None:
        raise UsageError(f"no benchmark named {name!r}", "choose one of: " + ", ".join(CASES))
    return builder(events, modes)


def notes(case: Case, out_dir: Path) -> list[str]:
    """Extra summary lines: case notes plus the related benchmark tables written by others."""
    lines = list(case.notes)
    related = {
        "parse_speed.csv": "parser speed (scripts/bench_parse.py)",
        "run_overhead.csv": "`harness run` vs bare bpftrace",
        "vm_boot.csv": "VM lane boot and in-guest run times",
    }
    for fname, what in related.items():
        if (out_dir / fname).exists():
            lines.append(f"- {what}: see [{fname}]({fname}).")
    return lines

"""The benchmarks `harness bench` knows: for each NAME, its workload and the tracers to compare.

Each benchmark is a catalog entry (its generated bpftrace program is what gets measured) plus a
workload that follows compare.bench's protocol. `ktrace` is the seed's path (loopback UDP sends
seen at udp_send_skb or its tracepoint equivalent), also run by the libbpf CO-RE twin;
`syscalls` is a tight C getppid() loop, where the per-event probe cost dominates.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.compare.bench import Tracer, Workload
from harness.compare.crosscheck import twin_build, twin_program
from harness.errors import UsageError
from harness.host.bpftrace_versions import resolve
from harness.host.symbols import probe_symbol
from harness.paths import workload
from harness.spec import catalog, codegen
from harness.spec.codegen_c import SHARED_HEADER, generate_floor_c
from harness.twin.generic import parse_dump, twin_frames

if TYPE_CHECKING:
    from harness.compare.kernel import Kernel
    from harness.host.symbols import Kallsyms
    from harness.spec.model import ProbeSpec

READY = "KTRACE_BENCH_READY"
TRACED_MODES = ("floor", "bpftrace", "libbpf")  # beside the untraced run, in this order
# The file ending of each mode's measured program (bench sources, content-addressed).
SOURCE_SUFFIX = {"floor": ".floor.bpf.c", "bpftrace": ".bt", "libbpf": ".bpf.c"}
SOURCES_DIR = "sources"


@dataclass
class Case:
    workload: Workload
    tracers: list[Tracer]
    attach: str
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # mode -> the measured program


def write_sources(sources: Mapping[str, str], out_dir: Path) -> dict[str, Path]:
    """Each measured program (`sources`: mode -> text) once, named by its content
    (`sources/<sha256:16><suffix>`): the same program measured by many benches (a twin under
    two bpftrace releases, on two guests) is one file, and each bench's CSV names the file of
    every mode's program."""
    written: dict[str, Path] = {}
    for mode, text in sources.items():
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        path = out_dir / SOURCES_DIR / f"{digest}{SOURCE_SUFFIX[mode]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written[mode] = path
    return written


def _bpftrace_binary() -> str:
    found = shutil.which("bpftrace")
    if found is None:
        raise UsageError("bpftrace is not installed", "run scripts/setup.sh")
    return found


def _on_path(stack: object, frame_prefix: str | None) -> bool:
    """Whether a leaf-first stack passes through a function (`udp_send_skb`, `.isra.0` clones
    included). Without a prefix every event counts."""
    if frame_prefix is None:
        return True
    return isinstance(stack, tuple) and any(
        f == frame_prefix or f.startswith((frame_prefix + "+", frame_prefix + ".")) for f in stack
    )


def _count_map(out: str, name: str, frame_prefix: str | None = None) -> int:
    """Sum of an int map's values in bpftrace's text output; with `frame_prefix`, only the rows
    whose stack key passes through that function (events the workload caused, not softirq work
    that happened to run while its pid was current)."""
    from harness.output.frames import to_frames
    from harness.output.parse import parse_text

    frame = to_frames(parse_text(out)).get(name)
    return _events(frame, frame_prefix)


def _events(frame: Any, frame_prefix: str | None) -> int:
    """Events one map accounts for: the sum of `value` (or of `count`, for hist/lhist/stats)."""
    if frame is None:
        return 0
    if frame_prefix is not None:
        keys = [c for c in frame.columns if c not in VALUE_COLUMNS]
        frame = frame[
            [any(_on_path(row[k], frame_prefix) for k in keys) for row in frame.to_dict("records")]
        ]
    return int(frame["value" if "value" in frame.columns else "count"].sum())


VALUE_COLUMNS = ("value", "count", "average", "total", "lo", "hi")


def spec_bpftrace_tracer(
    spec: ProbeSpec,
    count_map: str,
    frame_prefix: str | None,
    symbol: str | None,
    release: str | None = None,
) -> tuple[Tracer, str]:
    """bpftrace running the program generated from `spec` (pid-filtered); also its text.
    `release` names the bpftrace to run (harness.host.bpftrace_versions; None: the system's)."""
    if release is None:
        _bpftrace_binary()  # a clear error when bpftrace is missing
    resolved = resolve(release)
    version = resolved.version
    bpftrace = resolved.command
    marker = f"{READY}_{os.getpid()}"

    def program(pid: int) -> str:
        return codegen.generate(spec, None, version, marker, pid=pid, symbol=symbol)

    tracer = Tracer(
        "bpftrace",
        lambda pid: [bpftrace, "-e", program(pid)],
        lambda line: marker in line,
        lambda out: _count_map(out, count_map, frame_prefix),
        template=(bpftrace, "-e", "{program}"),
        program=program,
        ready_text=marker,
    )
    return tracer, codegen.generate(spec, None, version, marker, pid=12345, symbol=symbol)


def spec_libbpf_tracer(
    spec: ProbeSpec,
    count_map: str,
    frame_prefix: str | None,
    prebuilt: Path | None,
    symbol: str | None,
    kallsyms: Callable[[], Kallsyms] | None = None,
) -> tuple[Tracer, str]:
    """The generic loader running the twin generated from `spec`; also the twin's C text.
    Stopped by SIGINT like bpftrace (the bench driver gives tracers no control pipe).
    `kallsyms` reads the symbol table of the kernel it runs on (a lane's), to name its stacks."""
    twin = twin_program(spec)
    obj, loader, *_ = twin_build(twin.text, prebuilt)
    func = symbol if symbol and symbol != spec.probe.target else None

    def count(out: str) -> int:
        frames, _ = twin_frames(twin, parse_dump(out), kallsyms() if kallsyms else None)
        return _events(frames.get(count_map), frame_prefix)

    template = (
        str(loader), str(obj), "--set", "target_pid={pid}", "--signals-only",
        *(["--func", func] if func else []),
    )
    tracer = Tracer(
        "libbpf",
        lambda pid: [word.replace("{pid}", str(pid)) for word in template],
        lambda line: line.startswith("ready"),
        count,
        template=template,
        ready_prefix="ready",
    )
    return tracer, twin.text


def spec_floor_tracer(
    spec: ProbeSpec, prebuilt: Path | None, symbol: str | None
) -> tuple[Tracer, str]:
    """The floor: an empty program generated for `spec`'s attach point, run by the generic
    loader like the twin; it counts nothing. Also its C text."""
    floor = generate_floor_c(spec, symbol=symbol)
    obj, loader, *_ = twin_build(floor.text, prebuilt)
    func = symbol if symbol and symbol != spec.probe.target else None
    template = (str(loader), str(obj), "--signals-only", *(["--func", func] if func else []))
    tracer = Tracer(
        "floor",
        lambda pid: list(template),
        lambda line: line.startswith("ready"),
        lambda out: None,
        template=template,
        ready_prefix="ready",
    )
    return tracer, floor.text


def udp_workload(events: int) -> Workload:
    """harness/workloads/udp_send.py: waits for 'go' by default and times its own send loop."""
    argv = [sys.executable, str(workload("udp_send.py")), "--count", str(events)]
    return Workload(
        [*argv, "--sizes", "1,100,1000"],
        events,
        f"{events} loopback UDP sends (workloads/udp_send.py)",
        gate=(),
    )


def syscall_workload(events: int) -> Workload:
    """harness/workloads/syscall_loop.py: a C getppid() loop, gated by --wait-go."""
    argv = [sys.executable, str(workload("syscall_loop.py")), "--count", str(events)]
    return Workload(argv, events, f"{events} getppid() syscalls (workloads/syscall_loop.py)")


@dataclass(frozen=True)
class Bench:
    """A benchmark: its catalog entry, the map whose counts are the events, its workload."""

    catalog: str
    count_map: str
    frame_prefix: str | None  # count only stacks through this function (None: all events)
    workload: Callable[[int], Workload]
    default_events: int


BENCHES = {
    "ktrace": Bench("ktrace", "@stacks", "udp_send_skb", udp_workload, 50_000),
    "syscalls": Bench("syscalls", "@calls", None, syscall_workload, 1_000_000),
}


def check_modes(modes: Sequence[str]) -> None:
    """The tracers --modes names: at least one, each known."""
    unknown = set(modes) - set(TRACED_MODES)
    if not modes:
        raise UsageError("--modes names no tracer to compare with the untraced run",
                         f"use e.g. --modes {','.join(TRACED_MODES)}")
    if unknown:
        raise UsageError(
            f"unknown mode {sorted(unknown)[0]!r}", f"use --modes {','.join(TRACED_MODES)}"
        )


def programs_note(programs: Mapping[str, str], sources: Mapping[str, str]) -> list[str]:
    """The summary's line naming each mode's measured program (the CSV's `program` column;
    `sources`: mode -> the program's text)."""
    if not programs:
        return []
    named = ", ".join(f"{mode} [{path}]({path})" for mode, path in programs.items())
    twin = (f" (the twin's file #includes harness/twin/{SHARED_HEADER}, shipped with the "
            "package)" if f'#include "{SHARED_HEADER}"' in sources.get("libbpf", "") else "")
    return [f"- programs measured: {named}{twin}."]


def benchmark(name: str) -> Bench:
    """The benchmark NAME (its catalog entry's specs by attach type: `equivalents(name)`)."""
    bench = BENCHES.get(name)
    if bench is None:
        raise UsageError(
            f"no benchmark named {name!r}",
            "choose one of: " + ", ".join(BENCHES) + ", or a probe with spec options",
        )
    return bench


def equivalents(name: str) -> Mapping[str, ProbeSpec]:
    """Benchmark NAME's specs by attach type, for the planner to choose from."""
    return catalog.get(benchmark(name).catalog).equivalents


def build(
    name: str,
    events: int | None,
    modes: Sequence[str],
    attach: str | None = None,
    prebuilt: Path | None = None,
    bpftrace: str | None = None,
    spec: ProbeSpec | None = None,
    reason: str = "chosen with --attach",
    *,
    lane: Kernel,
) -> Case:
    """Workload and tracers for NAME at the attach type the planner chose (`attach`, and
    `reason` why), or for `spec`, a probe line's spec, at its own. Both tracers run programs
    generated from one spec, here, whichever kernel (`lane`, a Lane) runs them."""
    machine = lane

    check_modes(modes)
    if spec is not None:
        return _spec_case(spec, events, modes, prebuilt, bpftrace, machine)
    bench = benchmark(name)
    events = bench.default_events if events is None else events
    if events < 1:
        raise UsageError(f"--events {events} is below 1", "pass a positive event count")
    entry = catalog.get(bench.catalog)
    if attach is None:
        raise UsageError(f"no attach type chosen for {name}",
                         "ask harness.api.planner.choose (harness.bench does)")
    if attach not in entry.equivalents:
        raise UsageError(
            f"{name} has no {attach} equivalent", "use one of: " + ", ".join(entry.equivalents)
        )
    notes = [f"- attach type: {attach} ({reason})."]
    # The traceable name (a clone such as udp_send_skb.isra.0), resolved once for both tracers.
    spec = replace(entry.equivalents[attach], workload_pid=True)
    symbol = probe_symbol(spec, machine.kallsyms)
    tracers, sources = _spec_tracers(
        spec, bench.count_map, bench.frame_prefix, modes, prebuilt, symbol, bpftrace,
        machine.kallsyms,
    )
    return Case(bench.workload(events), tracers, attach, notes, sources)


def _spec_tracers(
    spec: ProbeSpec,
    count_map: str,
    frame_prefix: str | None,
    modes: Sequence[str],
    prebuilt: Path | None,
    symbol: str | None,
    release: str | None,
    kallsyms: Callable[[], Kallsyms],
) -> tuple[list[Tracer], dict[str, str]]:
    tracers: list[Tracer] = []
    sources: dict[str, str] = {}
    if "floor" in modes:
        tracer, text = spec_floor_tracer(spec, prebuilt, symbol)
        tracers.append(tracer)
        sources["floor"] = text
    if "bpftrace" in modes:
        tracer, text = spec_bpftrace_tracer(spec, count_map, frame_prefix, symbol, release)
        tracers.append(tracer)
        sources["bpftrace"] = text
    if "libbpf" in modes:
        tracer, text = spec_libbpf_tracer(
            spec, count_map, frame_prefix, prebuilt, symbol, kallsyms
        )
        tracers.append(tracer)
        sources["libbpf"] = text
    return tracers, sources


COUNTABLE = ("count", "hist", "lhist", "stats", "collect")


def _spec_case(
    spec: ProbeSpec,
    events: int | None,
    modes: Sequence[str],
    prebuilt: Path | None,
    release: str | None,
    machine: Kernel,
) -> Case:
    """A probe line as a benchmark: its first count-like map counts the events; the workload is
    the getppid() loop for syscall tracepoints and uprobes, UDP sends otherwise."""
    machine.capabilities()  # the lane ready to trace (the host mounts tracefs if missing)
    counted = next((a for a in spec.aggs if a.func in COUNTABLE), None)
    if counted is None:
        raise UsageError(
            "this spec has no map that counts events", "add e.g. --count-by comm or --hist EXPR"
        )
    if spec.pid is None:
        spec = replace(spec, workload_pid=True)
    syscalls = spec.probe.kind.startswith("u") or spec.probe.target.startswith("syscalls:")
    make = syscall_workload if syscalls else udp_workload
    n = events if events is not None else (1_000_000 if syscalls else 50_000)
    if n < 1:
        raise UsageError(f"--events {n} is below 1", "pass a positive event count")
    symbol = probe_symbol(spec, machine.kallsyms)
    tracers, sources = _spec_tracers(
        spec, counted.map, None, modes, prebuilt, symbol, release, machine.kallsyms
    )
    notes = [f"- spec: {spec.probe.text()}; events counted in {counted.map} ({counted.func})."]
    return Case(make(n), tracers, spec.probe.kind, notes, sources)


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
            lines.append(f"- {what}: see [{fname}]({fname}){_last_row(out_dir / fname)}.")
    return lines


def _last_row(path: Path) -> str:
    """`; latest: k=v, ...` from a CSV's last row, so the summary quotes the figures it cites."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return ""
    if not rows:
        return ""
    return "; latest: " + ", ".join(f"{k}={v}" for k, v in rows[-1].items())

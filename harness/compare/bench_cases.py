"""The benchmarks `harness bench` knows: for each NAME, its workload and the tracers to compare.

Each benchmark is a catalog entry (its generated bpftrace program is what gets measured) plus a
workload that follows compare.bench's protocol. `ktrace` is the seed's path (loopback UDP sends
seen at udp_send_skb or its tracepoint equivalent), also run by the libbpf CO-RE twin;
`syscalls` is a tight C getppid() loop, where the per-event probe cost dominates.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.compare.bench import Tracer, Workload
from harness.errors import UsageError
from harness.paths import workload

READY = "KTRACE_BENCH_READY"


@dataclass
class Case:
    workload: Workload
    tracers: list[Tracer]
    attach: str
    notes: list[str] = field(default_factory=list)


def results_root() -> Path:
    from harness.report.rundir import results_root as root

    return root()


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
    if frame is None:
        return 0
    if frame_prefix is not None:
        keys = [c for c in frame.columns if c != "value"]
        frame = frame[
            [any(_on_path(row[k], frame_prefix) for k in keys) for row in frame.to_dict("records")]
        ]
    return int(frame["value"].sum())


def bpftrace_tracer(
    catalog_name: str,
    attach: str,
    count_map: str,
    frame_prefix: str | None = None,
    symbol: str | None = None,
    release: str | None = None,
) -> Tracer:
    """The catalog entry's generated program for `attach`, filtered to the workload pid by codegen;
    events are the sum of `count_map` in what bpftrace prints on SIGINT. `release` names the
    bpftrace to run (harness.host.bpftrace_versions; None: the system's)."""
    from harness.host.bpftrace_versions import resolve
    from harness.spec import catalog, codegen

    spec = catalog.get(catalog_name).equivalents[attach]
    if release is None:
        _bpftrace_binary()  # a clear error when bpftrace is missing
    tracer = resolve(release)
    version = tracer.version
    bpftrace = tracer.command
    marker = f"{READY}_{os.getpid()}"

    def argv(pid: int) -> list[str]:
        program = codegen.generate(spec, attach, version, marker, pid=pid, symbol=symbol)
        return [bpftrace, "-e", program]

    return Tracer(
        "bpftrace",
        argv,
        lambda line: marker in line,
        lambda out: _count_map(out, count_map, frame_prefix),
    )


def libbpf_tracer(
    attach: str,
    frame_prefix: str | None = None,
    prebuilt: Path | None = None,
    func: str | None = None,
) -> Tracer:
    """The CO-RE twin's loader (built, from the build cache, or `prebuilt` on the host for the
    VM lane) on `attach`, filtered to the workload pid."""
    from harness.twin.build import build, prebuilt_outputs
    from harness.twin.loader import parse_loader_output

    loader = (prebuilt_outputs(prebuilt) if prebuilt else build()).loader

    def count(out: str) -> int:
        stacks = parse_loader_output(out, attach).stacks
        return sum(n for stack, n in stacks.items() if _on_path(stack, frame_prefix))

    return Tracer(
        "libbpf",
        lambda pid: [
            str(loader),
            "--attach",
            attach,
            "--pid",
            str(pid),
            *(["--func", func] if func else []),
        ],
        lambda line: line.startswith("ready"),
        count,
    )


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
    has_twin: bool
    workload: Callable[[int], Workload]
    default_events: int


BENCHES = {
    "ktrace": Bench("ktrace", "@stacks", "udp_send_skb", True, udp_workload, 50_000),
    "syscalls": Bench("syscalls", "@calls", None, False, syscall_workload, 1_000_000),
}


def build(
    name: str,
    events: int | None,
    modes: Sequence[str],
    attach: str | None = None,
    prebuilt: Path | None = None,
    bpftrace: str | None = None,
) -> Case:
    """Workload and tracers for NAME; attach type chosen like `harness run` unless forced."""
    from harness.host.capabilities import capabilities, choose_attach, mount_tracefs
    from harness.spec import catalog

    unknown = set(modes) - {"bpftrace", "libbpf"}
    if unknown:
        raise UsageError(f"unknown mode {sorted(unknown)[0]!r}", "use --modes bpftrace,libbpf")
    bench = BENCHES.get(name)
    if bench is None:
        raise UsageError(f"no benchmark named {name!r}", "choose one of: " + ", ".join(BENCHES))
    events = bench.default_events if events is None else events
    if events < 1:
        raise UsageError(f"--events {events} is below 1", "pass a positive event count")
    entry = catalog.get(bench.catalog)
    if attach is None:
        mount_tracefs()
        attach, reason = choose_attach(entry.equivalents, capabilities())
    elif attach not in entry.equivalents:
        raise UsageError(
            f"{name} has no {attach} equivalent", "use one of: " + ", ".join(entry.equivalents)
        )
    else:
        reason = "chosen with --attach"
    notes = [f"- attach type: {attach} ({reason})."]
    from harness.host.symbols import probe_symbol

    # The traceable name (a clone such as udp_send_skb.isra.0), resolved once for both tracers.
    symbol = probe_symbol(entry.equivalents[attach])
    tracers = []
    if "bpftrace" in modes:
        tracers.append(
            bpftrace_tracer(
                bench.catalog, attach, bench.count_map, bench.frame_prefix, symbol, bpftrace
            )
        )
    if "libbpf" in modes:
        if bench.has_twin:
            tracers.append(libbpf_tracer(attach, bench.frame_prefix, prebuilt, symbol))
        else:
            notes.append(f"- libbpf: no CO-RE twin exists for `{name}`; only bpftrace is compared.")
    return Case(bench.workload(events), tracers, attach, notes)


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
    import csv

    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return ""
    if not rows:
        return ""
    return "; latest: " + ", ".join(f"{k}={v}" for k, v in rows[-1].items())

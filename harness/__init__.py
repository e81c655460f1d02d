"""ktrace-harness: probe spec -> bpftrace -> parsed frames, cross-checked by a libbpf CO-RE twin.

The public API (loaded on first use, so `harness --help` stays quick):

- `trace(target, *, workload, duration, lane, attach, out, **spec_options) -> Trace`: generate,
  run and parse one bpftrace program; `Trace.frames` holds a pandas DataFrame per map. Its
  options (workload, duration, attach, count, sizes, timeout, bpftrace, ...) are keywords or one
  `TraceOptions` (`options=`), which `plan` and `fleet` take alike; `CrosscheckOptions` likewise
  serves crosscheck, plan_crosscheck and fleet_crosscheck.
- `again(run_dir) -> Trace`: run a recorded run again from its run.json (`harness run --again`).
- `crosscheck(target, *, lane, **options) -> Crosscheck`: bpftrace and the libbpf CO-RE twin on
  the same events; `Crosscheck.passed`, `.maps` (per-map verdict and diff frame).
- `matrix(target, *, kernels, bpftrace) -> Matrix`: one crosscheck per kernel (VM lane guests
  and/or the host) and bpftrace release; `Matrix.rows`, `.passed`, `.objects()`.
- `bench(target, *, lane, rounds, ...) -> Bench`: untraced vs bpftrace vs the libbpf twin (and
  an empty program, the floor) round by round; `Bench.csv`, `.summary`. `bench_table(target,
  kernels=, bpftrace=)` -> `BenchTable`: one bench per kernel x release and their table.
- `write_report(run_dir, *, out)`: a run's (or a folder of CSVs') flame graphs, plots and
  summary.md; `diff(run_a, run_b, *, out, map_name) -> Diff`: a differential flame graph and
  per-stack table of one stack map in two runs.
- `lane_up(lane) -> Guest`, `lane_down(lane)`, `lane_status(lane) -> list[Guest]`: VM guests
  kept up between runs, which runs naming the lane reach over SSH (`harness lane`).
- `doctor() -> Doctor`: what this kernel and toolchain can trace, the attach choice, releases.
- `fleet(target, *, hosts | inventory, jobs) -> Fleet`: `trace` on every host of a fleet at
  once; `Fleet.frames` has a leading `host` column, `.runs` each host's Trace or error.
  `fleet_crosscheck(...) -> FleetCrosscheck`: `crosscheck` on every host, one .bpf.o per attach.
- `plan(target, ...)`, `plan_crosscheck(target, ...)` -> `Plan`: what trace or crosscheck would
  run (attach choice and why, program text, the twin's C), without running it.
- `parse_text(text)`, `parse_json(text)`: bpftrace output (text or `-f json`) -> `Output`.
  `parse_file(path, *, format, program, csv) -> Parsed`: a saved output file -> its `Output`
  and frames (and with `csv=` a run directory of CSVs), each map checked against what bpftrace
  printed (`harness parse`).
- `to_frames(output, key_names)`: `Output` -> a tidy DataFrame per map.
- `ProbeSpec`, `catalog`: what to trace, and the built-in entries (`catalog.get("ktrace")`).
- The typed errors: every expected failure is a `HarnessError` with a one-line message.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (or, for `catalog`, the module itself); the library's
# capabilities live in harness.api, one module each
_EXPORTS = {
    "trace": "harness.api.trace",
    "again": "harness.api.again",
    "Trace": "harness.api.trace_result",
    "RunMeta": "harness.report.record",
    "crosscheck": "harness.api.crosscheck",
    "CrosscheckOptions": "harness.api.crosscheck",
    "TraceOptions": "harness.api.trace",
    "plan": "harness.api.trace",
    "plan_crosscheck": "harness.api.crosscheck",
    "Plan": "harness.spec.plan",
    "Crosscheck": "harness.api.crosscheck",
    "MapVerdict": "harness.api.crosscheck",
    "matrix": "harness.api.matrix",
    "bench": "harness.api.bench",
    "bench_table": "harness.api.bench",
    "Bench": "harness.api.bench",
    "BenchOptions": "harness.api.bench",
    "BenchTable": "harness.api.bench",
    "doctor": "harness.api.doctor",
    "diff": "harness.api.diff",
    "Diff": "harness.report.flamediff",
    "write_report": "harness.api.report",
    "Doctor": "harness.api.doctor",
    "fleet": "harness.api.fleet",
    "fleet_crosscheck": "harness.api.fleet",
    "Fleet": "harness.api.fleet",
    "FleetCrosscheck": "harness.api.fleet",
    "FleetError": "harness.api.fleet",
    "HostRun": "harness.api.fleet",
    "RemoteError": "harness.lanes.remote",
    "Matrix": "harness.api.matrix",
    "parse_text": "harness.output.parse",
    "parse_json": "harness.output.parse",
    "parse_file": "harness.api.parse",
    "Parsed": "harness.api.parse",
    "lane_up": "harness.api.lane",
    "lane_down": "harness.api.lane",
    "lane_status": "harness.api.lane",
    "Guest": "harness.api.lane",
    "to_frames": "harness.output.frames",
    "Output": "harness.output.model",
    "ProbeSpec": "harness.spec.model",
    "catalog": "harness.spec.catalog",
    "HarnessError": "harness.errors",
    "UsageError": "harness.errors",
    "ParseError": "harness.output.parse",
    "NoAttachPoint": "harness.host.capabilities",
    "BpftraceError": "harness.host.runner",
    "BpftraceSyntaxError": "harness.host.runner",
    "BpftraceTimeout": "harness.host.runner",
    "UnknownProbe": "harness.host.runner",
    "UnknownField": "harness.host.runner",
    "NotRoot": "harness.host.runner",
    "MissingKernelFeature": "harness.host.runner",
    "MissingDependency": "harness.errors",
    "WorkloadError": "harness.host.workload",
    "CrosscheckError": "harness.errors",
    "BuildError": "harness.twin.build",
    "LoaderError": "harness.twin.loader",
    "VMError": "harness.lanes.vm",
    "KernelFetchError": "harness.lanes.debian",
}
__all__ = [
    "Bench",
    "BenchOptions",
    "BenchTable",
    "BpftraceError",
    "BpftraceSyntaxError",
    "BpftraceTimeout",
    "BuildError",
    "Crosscheck",
    "CrosscheckError",
    "CrosscheckOptions",
    "Diff",
    "Doctor",
    "Fleet",
    "FleetCrosscheck",
    "FleetError",
    "Guest",
    "HarnessError",
    "HostRun",
    "KernelFetchError",
    "LoaderError",
    "MapVerdict",
    "Matrix",
    "MissingDependency",
    "MissingKernelFeature",
    "NoAttachPoint",
    "NotRoot",
    "Output",
    "ParseError",
    "Parsed",
    "Plan",
    "ProbeSpec",
    "RemoteError",
    "RunMeta",
    "Trace",
    "TraceOptions",
    "UnknownField",
    "UnknownProbe",
    "UsageError",
    "VMError",
    "WorkloadError",
    "again",
    "bench",
    "bench_table",
    "catalog",
    "crosscheck",
    "diff",
    "doctor",
    "fleet",
    "fleet_crosscheck",
    "lane_down",
    "lane_status",
    "lane_up",
    "matrix",
    "parse_file",
    "parse_json",
    "parse_text",
    "plan",
    "plan_crosscheck",
    "to_frames",
    "trace",
    "write_report",
]
assert set(__all__) == set(_EXPORTS)

if TYPE_CHECKING:
    from harness.api.again import again
    from harness.api.bench import Bench, BenchOptions, BenchTable, bench, bench_table
    from harness.api.crosscheck import (
        Crosscheck,
        CrosscheckOptions,
        MapVerdict,
        crosscheck,
        plan_crosscheck,
    )
    from harness.api.diff import diff
    from harness.api.doctor import Doctor, doctor
    from harness.api.fleet import (
        Fleet,
        FleetCrosscheck,
        FleetError,
        HostRun,
        fleet,
        fleet_crosscheck,
    )
    from harness.api.lane import Guest, lane_down, lane_status, lane_up
    from harness.api.matrix import Matrix, matrix
    from harness.api.parse import Parsed, parse_file
    from harness.api.report import write_report
    from harness.api.trace import TraceOptions, plan, trace
    from harness.api.trace_result import Trace
    from harness.errors import CrosscheckError, HarnessError, MissingDependency, UsageError
    from harness.host.capabilities import NoAttachPoint
    from harness.host.runner import (
        BpftraceError,
        BpftraceSyntaxError,
        BpftraceTimeout,
        MissingKernelFeature,
        NotRoot,
        UnknownField,
        UnknownProbe,
    )
    from harness.host.workload import WorkloadError
    from harness.lanes.debian import KernelFetchError
    from harness.lanes.remote import RemoteError
    from harness.lanes.vm import VMError
    from harness.output.frames import to_frames
    from harness.output.model import Output
    from harness.output.parse import ParseError, parse_json, parse_text
    from harness.report.flamediff import Diff
    from harness.report.record import RunMeta
    from harness.spec import catalog
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan
    from harness.twin.build import BuildError
    from harness.twin.loader import LoaderError


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (pandas and lark load only when needed)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if name == "catalog" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

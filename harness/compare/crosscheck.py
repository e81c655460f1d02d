"""A crosscheck's twin and its verdict: the generated libbpf CO-RE twin of a spec and its build,
and what both tracers gathered turned into frames, compared map by map, with the run's meta.

Any spec in the C generator's subset can be cross-checked: a catalog name (`ktrace`) or a probe
line with spec options, exactly like `harness run`. Both tracers filter on the pid of one gated
workload: the workload starts first (its pid known), both tracers attach, and only then is it
released, so both see exactly the same events (harness.compare.gather; harness.api.crosscheck
runs it). Every map is compared exactly (harness.compare.maps): equal keys and values, stacks
frame by frame after symbolisation.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.clock import utc_iso
from harness.compare.maps import MapComparison as Comparison
from harness.compare.maps import compare_spec_maps
from harness.errors import CrosscheckError, HarnessError
from harness.report.record import CrosscheckRecord

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare.gather import Gathered
    from harness.compare.kernel import Kernel
    from harness.host.bpftrace_versions import Bpftrace
    from harness.host.capabilities import Capabilities
    from harness.output.model import Output
    from harness.spec.codegen_c import TwinProgram
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan
    from harness.twin.build import BuildOutputs

__all__ = ["Comparison", "CrosscheckError", "CrosscheckResult", "compared", "twin_build"]


@dataclass
class CrosscheckResult:
    attach: str
    reason: str
    comparisons: list[Comparison]
    bpftrace_frames: dict[str, pd.DataFrame]
    libbpf_frames: dict[str, pd.DataFrame]
    build: BuildOutputs
    meta: CrosscheckRecord
    # bpftrace's raw streams (from the guest in the VM lane): the run directory keeps them, so
    # `harness parse bpftrace/stdout.txt` re-reads exactly what was compared.
    bpftrace_stdout: str = ""
    bpftrace_stderr: str = ""
    # The stop signal that cut the tracing short: the frames hold what was gathered until then.
    interrupted: int | None = None

    @property
    def passed(self) -> bool:
        return all(c.equal for c in self.comparisons)



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


def copy_twin_header(directory: Path) -> None:
    """Puts the shipped header every generated twin #includes beside its twin.bpf.c."""
    from harness.twin.build import TWIN_HEADER, source_dir

    shutil.copy(source_dir() / TWIN_HEADER, directory / TWIN_HEADER)


def twin_build(c_text: str, prebuilt: Path | None) -> tuple[Path, Path, str, str, str]:
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


def compared(
    got: Gathered, spec: ProbeSpec, twin: TwinProgram, machine: Kernel, tracer: Bpftrace,
    caps: Capabilities, chosen: Plan, program: str, argv: list[str],
    started: tuple[float, float], built: tuple[Path, Path, str, str, str], cat: str | None,
    held: list[int],
) -> CrosscheckResult:
    """Frames of both tracers, the comparison of every map, and the run's meta."""
    from harness.output.frames import to_frames
    from harness.output.printed import printed
    from harness.twin.build import BuildOutputs
    from harness.twin.generic import counters, twin_frames
    from harness.twin.loader import core_relocations

    bt_result, dumps, log = got.bpftrace, got.dumps, got.log
    # A lane hands the capture back parsed (Lane.gather): its output, None when none parsed.
    output: Output | None = getattr(bt_result, "output", None)
    obj, loader, sha, define, warnings = built
    attach, reason = chosen.attach, chosen.reason
    key_names = spec.key_names()
    bt_frames = to_frames(output, key_names) if output is not None else {}
    try:
        lb_frames, dropped = twin_frames(twin, dumps, machine.kallsyms())
    except HarnessError:
        if got.interrupted is None:
            raise
        lb_frames, dropped = {}, 0  # stopped before the loader had its maps: none to keep
    describe = {t.spec_map: t.describe for t in twin.maps}
    comparisons = compare_spec_maps(spec, bt_frames, lb_frames, describe)
    interrupted = got.interrupted or (held[0] if held else None)
    meta = CrosscheckRecord(
        command=" ".join(sys.argv),
        catalog=cat,
        spec=spec,
        attach=attach,
        attach_reason=reason,
        program=program,
        twin_c=twin.text,
        twin_clang_warnings=warnings,
        workload=argv,
        workload_pid=got.workload_pid,
        bpf_obj_sha256=sha,
        arch_define=define,
        kernel=caps.kernel,
        bpftrace=tracer.version_text,
        bpftrace_origin=tracer.origin,
        libbpf=caps.libbpf,
        libbpf_lost=dropped,
        libbpf_insert_races=counters(dumps)[1],
        core_relocations=core_relocations(log),
        lane=machine.describe(),
        started_at=utc_iso(started[0]),
        ended_at=utc_iso(time.time()),
        durations={
            "bpftrace_attach_s": bt_result.time_to_attached,
            "libbpf_attach_s": got.libbpf_attach_s,
            "total_s": round(time.monotonic() - started[1], 6),
        },
        # what bpftrace printed, per map and printing (the invariant the bpftrace/ part is
        # held to)
        printed=printed(output) if output is not None else {},
        ended_by="workload-exit" if interrupted is None else (
            "ctrl-c" if interrupted == signal.SIGINT else "signal"),
    )
    outputs = BuildOutputs(obj, loader, sha, define)
    return CrosscheckResult(
        attach, reason, comparisons, bt_frames, lb_frames, outputs, meta,
        bpftrace_stdout=bt_result.stdout, bpftrace_stderr=bt_result.stderr,
        interrupted=interrupted,
    )

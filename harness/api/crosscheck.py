"""`crosscheck`: bpftrace and the generated libbpf CO-RE twin on the same gated workload,
compared exactly (`harness crosscheck`), and `plan_crosscheck`, what it would run.

The plan comes from harness.api.planner (the same one `trace` uses); the machine side runs on
the lane (harness.compare.gather, in a guest or on a remote host too); frames, comparison and
meta are made here (harness.compare.crosscheck); the run directory is written last.

    >>> import harness
    >>> harness.crosscheck("ktrace").passed
    True
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api import inputs
from harness.api.inputs import Out
from harness.api.planner import settle_crosscheck
from harness.compare.crosscheck import compared, copy_twin_header, twin_build
from harness.compare.gather import GatherRequest
from harness.errors import UsageError
from harness.host.bpftrace_versions import resolve
from harness.host.lifetime import shielded
from harness.host.runner import Interrupted
from harness.lanes.registry import get_lane
from harness.progress import Progress, silent
from harness.report.rundir import rewrite_meta, write_run_dir

if TYPE_CHECKING:
    import pandas as pd

    from harness.compare.crosscheck import CrosscheckResult
    from harness.lanes.base import Lane
    from harness.report.record import CrosscheckRecord
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan


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
    meta: CrosscheckRecord  # what run.json holds (harness.report.record)
    bpf_obj_sha256: str
    path: Path | None

    @property
    def passed(self) -> bool:
        """True when every compared map is equal."""
        return all(v.equal for v in self.maps.values())

    def verdict(self) -> dict[str, Any]:
        """What verdict.json holds."""
        ended_by = self.meta.ended_by
        return {
            # Cut short by Ctrl-C/SIGTERM, the maps hold what each side had seen: no verdict.
            "passed": self.passed and ended_by == "workload-exit",
            "ended_by": ended_by,
            "spec": self.meta.spec.to_dict() if self.meta.spec is not None else None,
            "kernel": self.meta.kernel,
            "core_relocations": self.meta.core_relocations,
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


@dataclass(frozen=True)
class CrosscheckOptions(inputs.RunOptions):
    """`crosscheck`'s options (its keywords), one object for crosscheck, plan_crosscheck and
    fleet_crosscheck: RunOptions' (workload, `count` datagrams of `sizes` bytes, attach,
    timeout, bpftrace, force) with a crosscheck's defaults, and

    prebuilt: a build directory of the twin made elsewhere (one .bpf.o for every kernel).
    libbpf_pid_offset: point the twin at another pid (proves a mismatch is caught).
    """

    count: int = 200
    sizes: str = "1,100,1000,1400"
    prebuilt: Path | None = None
    libbpf_pid_offset: int = 0

    def checked(self) -> CrosscheckOptions:
        """The options with `prebuilt` checked (an existing directory)."""
        arguments.seconds("timeout", self.timeout, "60")
        arguments.integer("libbpf_pid_offset", self.libbpf_pid_offset, -(1 << 31), "0")
        if self.prebuilt is None:
            return self
        return replace(
            self, prebuilt=arguments.directory("prebuilt", self.prebuilt, "Path('build/twin')")
        )


def crosscheck(
    target: str = "ktrace",
    *,
    lane: str | Lane = "host",
    out: Out = None,
    progress: Progress | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    options: CrosscheckOptions | None = None,
    **keywords: Any,
) -> Crosscheck:
    """Run bpftrace and the libbpf CO-RE twin on the same gated workload and compare exactly.

    target: a catalog entry with a twin (`ktrace`).
    lane: `host`, `vm`, `vm:6.12` or a Lane, as in `trace`; the guest runs the host-built twin.
    out: the run directory (bpftrace/, libbpf/, verdict.json); None makes
        results/crosscheck-<UTC time>/, False writes nothing.
    progress: hears each long step's phase (harness.progress); None reports nowhere.
    on_plan: called with the Plan (attach choice, bpftrace program, twin C) before the twin is
        built or anything starts (`-v`).
    options: a CrosscheckOptions; each of its fields may also be given as a keyword, which wins:
        attach: force `kprobe`, `kfunc` or `tracepoint` instead of the capability probe's choice.
        count, sizes: datagrams the workload sends and their payload sizes (cycled).
        timeout: seconds to attach and to finish.
        workload: for a probe target, the command both tracers watch (default: a getppid()
            loop for syscall tracepoints and uprobes, UDP sends otherwise); both filter on its
            pid.
        bpftrace: the release to run (None: the installed one; "0.27"/"latest": a cached root).
        prebuilt, libbpf_pid_offset, force: as CrosscheckOptions says.
    The other keywords are the spec's: for a probe target, the spec flags as keywords, as in
        `trace`; the twin is generated from the same spec (harness.spec.codegen_c).
    """
    o, spec_opts = CrosscheckOptions.split(options, keywords)
    o = o.checked()
    inputs.run_options(lane=lane, out=out, bpftrace=o.bpftrace, progress=progress,
                       on_plan=on_plan, force=o.force)
    spec, argv = crosscheck_request(target, o, spec_opts)
    path = inputs.claim(out, "crosscheck", target, o.force)
    with inputs.unclaimed_on_failure(path if out is None else None):
        result = run_crosscheck(target, spec=spec, workload_argv=argv, lane=lane,
                                progress=progress or silent, on_plan=on_plan, options=o)
    with shielded(deliver=True):  # a Ctrl-C now waits until what was gathered is written
        done = _written(result, path)
    if result.interrupted is not None:
        # Stopped by Ctrl-C/SIGTERM: both tracers' partial frames are written; no verdict.
        # The written Crosscheck goes with the error (a fleet keeps it for its member).
        stop = Interrupted(result.interrupted)
        stop.partial = done
        raise stop
    return done


def crosscheck_request(
    target: str, o: CrosscheckOptions, spec_opts: Mapping[str, Any]
) -> tuple[ProbeSpec | None, list[str] | None]:
    """A crosscheck's checked inputs: the probe line's spec (None for a catalog entry) and the
    workload's argv."""
    from harness.spec import catalog

    attach, count, sizes, workload = o.attach, o.count, o.sizes, o.workload

    arguments.text("target", target, "'ktrace'")
    arguments.choice("attach", attach, inputs.ATTACH_CHOICES)
    inputs.udp_workload(count, sizes)
    if count < 1 and workload is None:
        raise UsageError(
            f"count {count} sends no datagram, so there is nothing to compare", "pass 1 or more"
        )
    spec = None if target in catalog.names() else inputs.spec_options(target, spec_opts)
    if spec is None and spec_opts:
        raise UsageError(f"spec options given for catalog entry {target!r}", "drop them")
    if spec is None and workload is not None:
        raise UsageError(
            f"catalog entry {target!r} brings its own workload, so --workload would be ignored",
            "shape it with --count/--sizes, or give a probe line to watch your own command",
        )
    return spec, inputs.parse_workload(workload)


def plan_crosscheck(
    target: str = "ktrace",
    *,
    lane: str | Lane = "host",
    progress: Progress | None = None,
    options: CrosscheckOptions | None = None,
    **keywords: Any,
) -> Plan:
    """What `crosscheck` with the same arguments would run, without building or running
    anything (`--dry-run`): the attach choice and why, the bpftrace program (WORKLOAD_PID
    standing for the gated workload's pid) and the twin's C (`Plan.twin_c`). `options` and the
    keywords: as in `crosscheck` (what only a run uses, such as its timeout, changes nothing
    here)."""
    o, spec_opts = CrosscheckOptions.split(options, keywords)
    inputs.run_options(lane=lane, out=False, bpftrace=o.bpftrace, progress=progress)
    spec, argv = crosscheck_request(target, o, spec_opts)
    machine = get_lane(lane)
    machine.capabilities(progress or silent)  # a guest boots on first use: its phases heard
    return settle_crosscheck(
        target, spec, o.attach, machine, machine.bpftrace(resolve(o.bpftrace)),
        workload_argv=argv, count=o.count, sizes=o.sizes,
    ).plan


def _written(result: CrosscheckResult, path: Path | None) -> Crosscheck:
    import pandas as pd

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
    _check_printed(done.path / "bpftrace", result)
    # the twin's part: the same meta but bpftrace's printed totals, which are not its own
    write_run_dir(done.path / "libbpf", result.libbpf_frames,
                  replace(result.meta, printed={}, printed_differences=[]))
    (done.path / "program.bt").write_text(result.meta.program)
    (done.path / "twin.bpf.c").write_text(result.meta.twin_c)
    # the fixed C it #includes, so the directory's twin builds on its own, as it ran
    copy_twin_header(done.path)
    (done.path / "verdict.json").write_text(json.dumps(done.verdict(), indent=2) + "\n")
    return done



def _check_printed(run_dir: Path, result: CrosscheckResult) -> None:
    """The printed-totals invariant on the bpftrace part, as `harness run` holds its own run
    directory to it: differences go to its run.json (`printed_differences`) and the meta the
    CLI reads."""
    from harness.report.totals import checked_run_dir

    if not result.meta.printed:
        return
    result.meta.printed_differences = checked_run_dir(
        run_dir, result.meta.printed, result.bpftrace_frames)
    rewrite_meta(run_dir, result.meta)  # [] too: a reader sees the check was made


def run_crosscheck(
    name: str = "ktrace",
    *,
    spec: ProbeSpec | None = None,
    workload_argv: list[str] | None = None,
    sockets: int = 3,
    lane: str | Lane = "host",
    progress: Progress = silent,
    on_plan: Callable[[Plan], None] | None = None,
    options: CrosscheckOptions | None = None,
    **keywords: Any,
) -> CrosscheckResult:
    """Run both tracers around one workload and compare every map of the spec.

    `lane` is the kernel under test: the host, or a VM lane's guest, which runs only the two
    tracers and the workload; codegen, the twin's build, parsing and the comparison stay here.

    `spec` (a probe line's spec) replaces the catalog entry `name`. `options` and `keywords`
    (CrosscheckOptions' fields only: the spec is made already) are `crosscheck`'s, unchecked:
    `libbpf_pid_offset` deliberately points the twin at another pid (a test proves a mismatch
    is caught), `prebuilt` is a directory holding a twin built elsewhere (twin.bpf.c,
    twin.bpf.o), `bpftrace` names the release (harness.host.bpftrace_versions; None: the
    system's). `progress` hears the phases (building the twin, tracing); it never prints.
    `on_plan` is called with the plan (harness.spec.plan) before anything is built or started.
    """
    o, unknown = CrosscheckOptions.split(options, keywords)
    if unknown:
        raise TypeError(f"run_crosscheck() got unexpected keywords {sorted(unknown)}")
    attach, count, sizes, timeout = o.attach, o.count, o.sizes, o.timeout
    prebuilt, libbpf_pid_offset, bpftrace = o.prebuilt, o.libbpf_pid_offset, o.bpftrace

    machine = get_lane(lane)
    machine.capabilities(progress)  # a guest boots on first use: its phases heard
    tracer = machine.bpftrace(resolve(bpftrace))
    planned = settle_crosscheck(
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
    obj, loader, sha, define, warnings = twin_build(twin.text, prebuilt)
    marker = chosen.marker
    programs: list[str] = []

    def program_for(pid: int) -> str:
        programs.append(chosen.program(pid))
        return programs[-1]

    started = time.time(), time.monotonic()
    progress("tracing with bpftrace and the twin")
    request = GatherRequest(
        marker,
        workload=argv,
        loader=str(loader),
        obj=str(obj),
        setting_names=list(twin.settings),
        func=symbol if symbol != spec.probe.target else None,
        pid_offset=libbpf_pid_offset,
        cgroup=spec.cgroup,
        timeout=timeout,
        bpftrace=tracer.command,
    )
    got = machine.gather(program_for, request, progress=progress)
    bt_result = got.bpftrace
    program = programs[-1]
    if bt_result.error is not None and got.interrupted is None:
        raise bt_result.error
    # What was gathered is compared and handed back whole: a stop signal now is held, and
    # the result says it was interrupted (the caller writes it, then stops).
    with shielded() as held:
        return compared(
            got, spec, twin, machine, tracer, caps, chosen, program, argv, started,
            (obj, loader, sha, define, warnings), cat, held,
        )


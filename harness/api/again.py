"""`again`: a recorded run once more from its run.json (`harness run --again`), every field read
back and checked as `trace` checks its argument."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api.inputs import Out, lane_name, parse_workload, run_options
from harness.api.trace import run_trace
from harness.errors import HarnessError, UsageError
from harness.host.bpftrace_versions import resolve
from harness.report.record import RUN_SCHEMA, TraceRecord, read_record
from harness.spec.literal import calls_exit

if TYPE_CHECKING:
    from harness.api.trace_result import Trace
    from harness.progress import Progress
    from harness.spec.model import ProbeSpec
    from harness.spec.plan import Plan


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
    began = (time.time(), time.monotonic())
    run = arguments.path("run", run, "'results/run-20261127T090622Z'")
    arguments.optional_seconds("timeout", timeout, "60")
    run_options(lane="host", out=out, bpftrace=None, progress=progress, on_plan=on_plan,
                 on_progress=on_progress, report=report, plots=plots, check=check, force=force)
    rec = _recorded(run)
    done = run_trace(
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
    done.notes[:0] = rec.notes
    return done


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
    notes: list[str]  # what an older run.json lacked (read_record's notes)


def _recorded(run: Path) -> _Recorded:
    """Read run.json through its one reader (harness.report.record) and check each field: a
    hand-edited or damaged field is a one-line error naming it, and a run that nothing would
    bound (no workload, no duration, no exit()) is refused, as the CLI refuses it."""
    where = run / "run.json"
    fix = "pass a results/<run-id> directory written by `harness run`"
    try:
        rec = read_record(run)
    except HarnessError as err:
        raise UsageError(err.cause, err.fix) from None
    if rec is None:
        raise UsageError(f"{run} holds no run.json: it is not a harness run", fix)
    if not isinstance(rec, TraceRecord) or "target" in rec.missing:
        raise UsageError(
            f"{where} is the run.json of a {rec.kind}, not of a `harness run`"
            if not isinstance(rec, TraceRecord) else f"{where} records no target",
            "run the target again by hand, e.g. `harness run TARGET`",
        )
    if "spec" in rec.unread and not isinstance(rec.extra.get("spec"), dict):
        raise UsageError(
            f"{where} keeps its spec as text ({rec.unread['spec']}), as run.json did before "
            f"schema 2: it cannot be run again (this harness writes schema {RUN_SCHEMA})",
            "run the target again by hand, e.g. `harness run TARGET`",
        )

    def part(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise UsageError(f"{name}={value!r:.60} is not an object", "")
        return value

    try:
        if "spec" in rec.unread:
            raise UsageError(rec.unread["spec"], "")
        target = arguments.text("target", rec.target, "'ktrace'")
        spec = rec.spec
        if spec is None and "{" not in target:
            raise UsageError("it has neither a spec nor a whole program", "")
        argv = parse_workload(rec.workload)
        duration = arguments.optional_seconds("duration_s", rec.duration_s)
        timeout = arguments.seconds(
            "timeout_s", 60.0 if "timeout_s" in rec.missing else rec.timeout_s, "60")
        lane = lane_name(part("lane", rec.lane).get("name", "host"))
        release = arguments.release(part("bpftrace", rec.bpftrace).get("name"))
    except UsageError as err:
        raise UsageError(
            f"{where}: {err.cause}", "repair that field, or run the target again by hand"
        ) from None
    if argv is None and duration is None and spec is None:
        bounded = calls_exit(target)
    else:
        bounded = argv is not None or duration is not None
    if not bounded:
        raise UsageError(
            f"{where} records no workload, no duration_s and no exit(): nothing bounds the run",
            "run the target again by hand with --workload CMD or --duration S",
        )
    return _Recorded(target, spec, argv, duration, timeout, lane, release,
                     str(rec.attach_reason or None), rec.notes)


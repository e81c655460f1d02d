"""`again`: a recorded run once more from its run.json (`harness run --again`), every field read
back and checked as `trace` checks its argument."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api.inputs import Out, parse_workload, run_options
from harness.api.record import RUN_SCHEMA
from harness.api.trace import run_trace
from harness.errors import UsageError

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
    from harness.host.bpftrace_versions import resolve

    began = (time.time(), time.monotonic())
    run = arguments.path("run", run, "'results/run-20261127T090622Z'")
    arguments.optional_seconds("timeout", timeout, "60")
    run_options(lane="host", out=out, bpftrace=None, progress=progress, on_plan=on_plan,
                 on_progress=on_progress, report=report, plots=plots, check=check, force=force)
    rec = _recorded(run)
    return run_trace(
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
        argv = parse_workload(meta.get("workload"))
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


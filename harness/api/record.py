"""run.json of one trace: what went in, the choices made, and how it went (RunMeta).

Field by field in results/README.md; `again` reads it back (harness.api.again).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.spec.model import ProbeSpec

RUN_SCHEMA = 2  # run.json's `schema`: 2 is the structured form documented in results/README.md
ENDED_BY = ("workload-exit", "duration", "program-exit", "ctrl-c", "signal", "error")


@dataclass
class RunMeta:
    """What run.json holds for one `trace`: the inputs, the choices made, and how it went.

    Field by field in results/README.md. `spec` is the ProbeSpec that ran (None for a whole
    program); run.json stores it as `spec.to_dict()`, which `ProbeSpec.from_dict` reads back.
    Times: `started_at`/`ended_at` are ISO-8601 UTC wall-clock strings, `durations` are
    monotonic seconds per phase, so a clock step during a run cannot make them lie.
    """

    command: str
    target: str
    spec: ProbeSpec | None
    program: str | None
    marker: str
    attach: str
    attach_reason: str
    capabilities: dict[str, Any]
    workload: list[str] | None
    duration_s: float | None
    timeout_s: float
    workload_status: int | None
    probes: int | None
    exit_status: int | None
    ended_by: str
    error: str | None
    printed_lines: list[str]
    diagnostics: str
    started_at: str
    ended_at: str
    durations: dict[str, float | None]
    bpftrace: dict[str, Any] = field(default_factory=dict)  # which release ran, from where
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lane: dict[str, Any] = field(default_factory=lambda: {"name": "host"})
    # the spec's maps that got no entry: their CSV holds the header only
    no_events: list[str] = field(default_factory=list)
    again_of: str | None = None  # the run directory `harness run --again` repeated
    # bytes the workload wrote to stdout/stderr and how many were cut (workload.*.txt)
    workload_output: dict[str, Any] = field(default_factory=dict)
    # per map, per printing: the entries and value total bpftrace printed (harness.output.printed)
    printed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # where a CSV, .folded file or flame page disagrees with `printed` (one line each)
    printed_differences: list[str] = field(default_factory=list)
    schema: int = RUN_SCHEMA

    def as_dict(self) -> dict[str, Any]:
        """run.json's content: plain JSON data, the spec as its dict."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["spec"] = self.spec.to_dict() if self.spec is not None else None
        return data


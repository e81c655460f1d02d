"""What a run will do, settled before anything starts: the spec, the attach type and why, and
the program text for the bpftrace release that will run it.

`harness.trace`, `harness.crosscheck` and their dry runs (`--dry-run`, `-v`) all go through one
Plan, made by one planner (harness.api.planner), so the program a dry run prints is the program a
run records. Pure: the choices that need the machine (capabilities, the kernel's symbol name,
the bpftrace version) are made by the planner and handed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.spec.literal import with_ready_marker

if TYPE_CHECKING:
    from harness.spec.codegen import FieldOffsets, MemberLayout
    from harness.spec.model import ProbeSpec


@dataclass(frozen=True)
class Plan:
    """One run's program: a spec (or a literal program), how it attaches, and its marker.

    `twin_c` is the generated libbpf C (a crosscheck's, or a run's when asked and its spec is in
    the twin's subset); `twin_note` says why there is none. `bpftrace` names the release.
    """

    target: str
    spec: ProbeSpec | None
    attach: str
    reason: str
    marker: str
    version: tuple[int, int, int]
    bpftrace: str = ""
    symbol: str | None = None
    literal: str | None = None
    workload: tuple[str, ...] | None = None
    twin_c: str | None = None
    twin_note: str = ""

    @property
    def needs_pid(self) -> bool:
        """The program filters on the workload's pid, known only once the workload starts."""
        return self.spec is not None and self.spec.pid is None and self.spec.workload_pid

    def program(self, pid: int | None = None, offsets: FieldOffsets | None = None) -> str:
        """The program exactly as it runs, marker included (a workload-pid spec needs `pid`).
        `offsets`: for bpftrace --aot, member reads through casts at a kernel's offsets
        (harness.spec.codegen.FieldOffsets); a whole program is as written."""
        if self.spec is None:
            assert self.literal is not None
            return with_ready_marker(self.literal, self.marker)
        from harness.spec import codegen  # not for a whole program: it needs no spec machinery

        return codegen.generate(
            self.spec, self.attach, self.version, self.marker, pid=pid, symbol=self.symbol,
            offsets=offsets,
        )

    def shown(self) -> str:
        """The program as a dry run prints it: as it runs, with WORKLOAD_PID standing for the
        workload's pid when the spec filters on it."""
        if not self.needs_pid:
            return self.program()
        assert self.spec is not None
        from harness.spec import codegen

        return codegen.generate(
            self.spec, self.attach, self.version, self.marker, pid=codegen.WORKLOAD_PID,
            symbol=self.symbol,
        )


@dataclass
class Programs:
    """A plan's program as a lane asks for it, per workload pid (None: no pid filter): each
    text handed out is kept in `ran`, the last one being the run's. A lane that compiles ahead
    of time asks `portable` for the same program with its cast member reads at the remote
    kernel's offsets (bpftrace --aot refuses casts); that text is not the run's program."""

    plan: Plan
    ran: list[str] = field(default_factory=list)

    def __call__(self, pid: int | None = None) -> str:
        self.ran.append(self.plan.program(pid))
        return self.ran[-1]

    def reads_through_casts(self) -> bool:
        """True when the program reads a struct member through a cast (its text needs a
        kernel's offsets to be compiled ahead of time)."""
        from harness.spec.codegen import FieldOffsets

        if self.plan.spec is None:
            return False
        survey = FieldOffsets(lambda struct, member: None)
        self.plan.program(1, survey)
        return bool(survey.asked)

    def portable(self, pid: int | None, layout: Callable[[str, str], MemberLayout | None]
                 ) -> tuple[str | None, str]:
        """The program for `pid` with each member read through a cast at the offset `layout`
        gives, and what moved where; or (None, why not) when a member cannot be so read."""
        from harness.spec.codegen import FieldOffsets

        offsets = FieldOffsets(layout)
        text = self.plan.program(pid, offsets)
        if offsets.refused:
            return None, offsets.said()
        return text, offsets.said()

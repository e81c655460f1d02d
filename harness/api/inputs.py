"""The checked inputs every capability shares: the workload's argv, a probe line's spec from
keywords, the common run options, and the run directory settled before anything runs.

Each check raises a UsageError naming the argument and the fix before the machine is touched
(harness.arguments holds the checks of single values).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from harness import arguments
from harness.errors import UsageError
from harness.lanes.base import Lane
from harness.report.rundir import claim_run_dir
from harness.spec.options import SpecOptions
from harness.workloads.udp_send import parse_sizes

if TYPE_CHECKING:
    from harness.spec.model import ProbeSpec

Out = Path | str | Literal[False] | None

ATTACH_CHOICES = ("kprobe", "kfunc", "tracepoint")


@dataclass(frozen=True)
class RunOptions:
    """What a traced run is asked beyond its target, lane, directory and callbacks, the same for
    each of its capability's calls (run, plan, every member of a fleet): the workload (a
    command, else the catalog entry's own UDP sends: `count` datagrams of `sizes` bytes), the
    attach type forced (None: the capability probe's choice), seconds to wait for the attach,
    the bpftrace release (None: the installed one) and `force` (replace a run directory).
    TraceOptions and CrosscheckOptions add their capability's own."""

    workload: str | Sequence[str] | None = None
    attach: str | None = None
    count: int = 100
    sizes: str = "1,100,1000"
    timeout: float = 60.0
    bpftrace: str | None = None
    force: bool = False

    @classmethod
    def split(
        cls, options: RunOptions | None, keywords: Mapping[str, Any]
    ) -> tuple[Self, dict[str, Any]]:
        """`options` (default: every field's default) with the keywords that name its fields
        put in, and the other keywords: the spec keywords (`count_by=`, `pid=`, ...)."""
        base: Self = cls() if options is None else arguments.instance(
            "options", options, cls, f"{cls.__name__}(count=5)"
        )
        names = {f.name for f in dataclasses.fields(cls)}
        mine = {k: v for k, v in keywords.items() if k in names}
        return dataclasses.replace(base, **mine), {
            k: v for k, v in keywords.items() if k not in names
        }


def parse_workload(workload: str | Sequence[str] | None) -> list[str] | None:
    """A shell-quoted string or an argv list -> argv; '' is a usage error, None means none."""
    if workload is None:
        return None
    if isinstance(workload, str):
        try:
            argv = shlex.split(workload)
        except ValueError as err:
            raise UsageError(
                f"cannot split the workload command: {err}", "balance its quotes"
            ) from None
    elif isinstance(workload, Sequence) and all(
        isinstance(w, str | os.PathLike) for w in workload
    ):
        argv = [os.fspath(w) for w in workload]  # type: ignore[misc]
    else:
        raise UsageError(
            f"workload={workload!r:.60} is neither a command string nor a list of strings",
            "pass e.g. workload='ping -c1 ::1' or workload=['ping', '-c1', '::1']",
        )
    if not argv:
        raise UsageError("the workload is empty", "pass a command, e.g. workload='ping -c1 ::1'")
    if not argv[0].strip():
        raise UsageError("the workload's program (its first word) is empty",
                         "pass a command, e.g. workload=['ping', '-c1', '::1']")
    for i, word in enumerate(argv):
        arguments.no_nul(f"workload word {i}", word)
    return argv


def spec_options(probe: str, options: Mapping[str, Any]) -> ProbeSpec:
    """A probe line plus the CLI's spec options given as keywords -> ProbeSpec.

    Keywords are the CLI flags with `_` for `-` (`count_by="kstack"`, `arg="skb=struct sk_buff *"`,
    `filter=...`, `hist=...`, `by=...`, `pid=`, `comm=`, `cgroup=`, `workload_pid=True`); options
    that repeat on the command line take a string or a list of strings (harness.spec.options).
    """
    return SpecOptions.from_keywords(options).to_spec(probe)



def udp_workload(count: Any, sizes: Any) -> None:
    """`count` and `sizes` of the catalog's UDP workload, checked before it is started."""
    arguments.integer("count", count, 0, "100")
    arguments.text("sizes", sizes, "'1,100,1000'")
    try:
        parse_sizes(sizes)
    except SystemExit as err:
        raise UsageError(
            f"sizes={sizes!r:.60} is not a list of payload sizes "
            f"({str(err).removeprefix('udp_send: ')})",
            "pass byte counts from 0 to 65507, e.g. sizes='1,100,1000'",
        ) from None


def lane_name(value: Any) -> Any:
    """`lane=`: 'host', 'vm', 'vm:SERIES', 'ssh:...' or a Lane object."""
    if isinstance(value, Lane):
        return value
    name = arguments.text("lane", value, "'host' or 'vm:6.1'")
    if name.split(":", 1)[0] not in ("host", "vm", "ssh"):
        raise UsageError(f"lane={arguments._shown(value)} is not a lane",
                         "pass 'host', 'vm', 'vm:6.12', 'ssh:[user@]host[:port]' or a Lane")
    return name


def run_options(
    *, lane: Any, out: Any, bpftrace: Any, progress: Any = None, on_plan: Any = None,
    on_progress: Any = None, **flags: Any,
) -> None:
    """The checks every run shares: where, which release, callbacks and flags."""
    lane_name(lane)
    arguments.out(out)
    arguments.release(bpftrace)
    for name, value in (("progress", progress), ("on_plan", on_plan),
                        ("on_progress", on_progress)):
        arguments.callback(name, value)
    for name, value in flags.items():
        arguments.flag(name, value)



def claim(out: Out, kind: str, target: str, force: bool) -> Path | None:
    """Where the run will be written, settled before tracing (None: nowhere, out=False)."""
    if out is False:
        return None
    return claim_run_dir(Path(out) if out is not None else None, kind, target, force=force)


@contextlib.contextmanager
def unclaimed_on_failure(path: Path | None) -> Iterator[None]:
    """A run that fails before it gathered anything leaves no empty run directory behind."""
    try:
        yield
    except BaseException:
        if path is not None:
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty
        raise


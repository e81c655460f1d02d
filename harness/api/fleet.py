"""One spec on every machine of a fleet at once: `fleet` (trace) and `fleet_crosscheck`.

    >>> f = harness.fleet("ktrace", hosts=["lab-a", "root@lab-b:2222", "vm:6.1"])
    >>> f.frames["@stacks"].groupby("host")["value"].sum()
    >>> harness.fleet_crosscheck("ktrace", inventory="hosts.ini").one_object_per_attach

Each member is a lane (harness.lanes.inventory: a bare name is an ssh destination), traced
by `trace` / `crosscheck` in a thread of its own, at most `jobs` at once; nothing here knows
more about a machine than its lane does. A member that fails is reported with its one-line
error and the others complete. The results directory holds one ordinary run directory per
member (so `harness diff`, `report` and `run --again` take them as they are), one CSV per
map over the fleet with a leading `host` column, and fleet.json (results/README.md).

Stopping: a Ctrl-C or SIGTERM reaches the main thread, which hands it to every lane
(`Lane.interrupt`): each remote run stops as a local Ctrl-C stops it and keeps its partial
capture; members not yet started do not start. SIGKILL and a dropped link are the lanes'
own business (their agents stop everything when the connection ends).
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.api.crosscheck import (
    Crosscheck,
    CrosscheckOptions,
    crosscheck,
    crosscheck_request,
)
from harness.api.inputs import claim, run_options
from harness.api.trace import TraceOptions, trace, trace_request
from harness.clock import utc_iso
from harness.compare.objects import OneObjectPerAttach
from harness.errors import HarnessError, UsageError
from harness.host.bpftrace_versions import resolve
from harness.host.capabilities import capabilities
from harness.host.lifetime import shielded
from harness.host.runner import Interrupted
from harness.lanes import inventory as inv
from harness.lanes.inventory import Member, directory_names
from harness.lanes.registry import get_lane
from harness.progress import Progress, silent
from harness.report.rundir import csv_name, write_csvs

if TYPE_CHECKING:
    import pandas as pd

    from harness.api.inputs import Out
    from harness.api.trace_result import Trace
    from harness.lanes.base import Lane
    from harness.output.columns import Table

FLEET_SCHEMA = 1
DEFAULT_JOBS = 8


class FleetError(HarnessError):
    """One or more members of a fleet failed; the others' results are kept."""


@dataclass
class HostRun:
    """One member's part of a fleet: its label and lane, what it returned (a Trace or a
    Crosscheck; None when it failed before gathering anything), its one-line error."""

    label: str
    lane: str
    result: Any = None
    error: str | None = None
    path: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Fleet:
    """`fleet`'s answer: one HostRun per member in the order given, merged frames and tables
    with a leading `host` column (a failed member's partial rows included), the directory."""

    target: str
    runs: list[HostRun]
    path: Path | None
    interrupted: int | None = None  # the signal that stopped the fleet
    _frames: dict[str, pd.DataFrame] | None = field(default=None, repr=False)
    _tables: dict[str, Table] | None = field(default=None, repr=False)

    @property
    def traces(self) -> dict[str, Trace]:
        """label -> Trace, for the members that gathered something."""
        return {r.label: r.result for r in self.runs if r.result is not None}

    @property
    def errors(self) -> dict[str, str]:
        """label -> one-line error, for the members that failed."""
        return {r.label: r.error for r in self.runs if r.error is not None}

    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def tables(self) -> dict[str, Table]:
        if self._tables is None:
            self._tables = merge_tables({k: t.tables for k, t in self.traces.items()})
        return self._tables

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        """One DataFrame per map over the fleet: `host`, then the members' own columns."""
        if self._frames is None:
            import pandas as pd

            merged: dict[str, pd.DataFrame] = {}
            names = list(dict.fromkeys(n for t in self.traces.values() for n in t.frames))
            for name in names:
                parts = []
                for label, t in self.traces.items():
                    if name in t.frames:
                        frame = t.frames[name].copy()
                        frame.insert(0, "host", label)
                        parts.append(frame)
                merged[name] = pd.concat(parts, ignore_index=True)
            self._frames = merged
        return self._frames

    def check(self) -> Fleet:
        """Raise a FleetError naming every member that failed; else self."""
        if self.errors:
            said = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
            where = f"the others' results are in {self.path}" if self.path else "see .runs"
            raise FleetError(f"{len(self.errors)} of {len(self.runs)} hosts failed ({said})",
                             where)
        return self


def merge_tables(per_host: Mapping[str, Mapping[str, Table]]) -> dict[str, Table]:
    """{host: {map: Table}} -> {map: Table} with `host` first, rows in host order; a column
    one host lacks (a map printed once there, several times elsewhere) is empty there."""
    from harness.output.columns import Table

    names = list(dict.fromkeys(n for tables in per_host.values() for n in tables))
    merged: dict[str, Table] = {}
    for name in names:
        columns = ["host", *dict.fromkeys(
            c for tables in per_host.values() if name in tables for c in tables[name].columns)]
        data: dict[str, list[Any]] = {c: [] for c in columns}
        for host, tables in per_host.items():
            if name not in tables:
                continue
            table = tables[name]
            rows = len(table)
            data["host"] += [host] * rows
            for c in columns[1:]:
                data[c] += table.data.get(c, [None] * rows)
        merged[name] = Table(data)
    return merged


def members(hosts: Sequence[str] | str | None, inventory: Path | str | None) -> list[Member]:
    """The fleet from `hosts` (a list of names) or an inventory file, exactly one of them."""
    if (hosts is None) == (inventory is None):
        raise UsageError("a fleet takes hosts=[...] or inventory=FILE, one of them",
                         "pass e.g. hosts=['lab-a', 'lab-b'] or inventory='hosts.ini'")
    if hosts is not None:
        return inv.from_list(arguments.names("hosts", hosts, "['lab-a', 'root@lab-b:2222']"))
    return inv.read(arguments.path("inventory", inventory, "'hosts.ini'"))


def _prepared(chosen: list[Member]) -> dict[str, Lane]:
    """Each member's lane, made here in the main thread (lanes are shared per process), and
    what every thread would otherwise compute at once (this machine's tools, the agent's
    code) computed once."""
    capabilities()
    if any(m.lane.startswith("ssh:") for m in chosen):
        from harness.lanes.remote import payload

        payload()
    lanes = {m.label: get_lane(m.lane) for m in chosen}
    for lane in lanes.values():
        lane.interrupt(None)
    return lanes


def _in_threads(
    chosen: list[Member],
    lanes: Mapping[str, Lane],
    jobs: int,
    one: Callable[[Member, Lane], HostRun],
    on_host: Callable[[HostRun], None] | None,
) -> tuple[list[HostRun], int | None]:
    """`one(member, lane)` for every member, `jobs` at a time; a stop signal in this thread
    is handed to every lane once (later ones only wait), and members not started are not."""
    results: dict[str, HostRun] = {}
    stopped: int | None = None
    started: set[str] = set()
    lock = threading.Lock()

    def run(m: Member) -> HostRun:
        with lock:
            if stopped is not None:
                return HostRun(m.label, m.lane, error=_not_started(stopped))
            started.add(m.label)
        t0 = time.monotonic()
        try:
            done = one(m, lanes[m.label])
        except HarnessError as err:
            done = HostRun(m.label, m.lane, error=str(err))
        except Exception as err:  # a bug in one member's run must not lose the others
            said = " ".join(str(err).split())[:200]
            done = HostRun(m.label, m.lane, error=f"internal error: {err.__class__.__name__}: "
                           f"{said}; this is a harness bug: please report it")
        done.seconds = time.monotonic() - t0
        return done

    def stop_all(stop: KeyboardInterrupt) -> None:
        nonlocal stopped
        if stopped is None:
            with lock:
                stopped = int(getattr(stop, "signum", signal.SIGINT))
            for lane in lanes.values():
                lane.interrupt(stopped)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fleet")
    pending: set[concurrent.futures.Future[HostRun]] = set()  # not yet handed to on_host
    try:
        try:
            # A stop waits until every member is handed over (the first may run already): one
            # landing in between escaped from here, and from any step outside this loop's
            # `except`: the members went on unstopped, and fleet.json was never written.
            with shielded(deliver=True):
                pending = {pool.submit(run, m) for m in chosen}
        except KeyboardInterrupt as stop:
            stop_all(stop)
        while pending:
            try:
                done, _ = concurrent.futures.wait(pending, timeout=0.25)
                for future in done:
                    # A stop waits until this member is recorded and reported: it cut on_host
                    # short, or left the member pending, to be reported again.
                    with shielded(deliver=True):
                        host_run = future.result()
                        results[host_run.label] = host_run
                        pending.discard(future)
                        if on_host is not None:
                            on_host(host_run)
            except KeyboardInterrupt as stop:
                stop_all(stop)
    finally:
        pool.shutdown(wait=True)
        for lane in lanes.values():
            lane.interrupt(None)
    return [results[m.label] for m in chosen], stopped


def _not_started(signum: int) -> str:
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
    return f"not run: the fleet was stopped by {name} before this host started"


def fleet(
    target: str,
    *,
    hosts: Sequence[str] | None = None,
    inventory: Path | str | None = None,
    jobs: int = DEFAULT_JOBS,
    out: Out = None,
    progress: Progress | None = None,
    on_host: Callable[[HostRun], None] | None = None,
    options: TraceOptions | None = None,
    **keywords: Any,
) -> Fleet:
    """`trace` on every member of a fleet at once, at most `jobs` at a time.

    hosts: the members, each `[user@]host[:port]` (an ssh destination, through the user's own
        ssh config) or a lane name (`ssh:...`, `vm:6.1` for a guest kept up, `host`).
    inventory: instead of hosts, a file: one host per line, or an Ansible INI/YAML inventory.
    jobs: how many members run at once (default 8).
    out: the fleet's directory: one run directory per member (named after it), one CSV per
        map over the fleet (`host` first) and fleet.json; None makes results/fleet-<time>/,
        False writes nothing.
    on_host: called with each member's HostRun as it finishes (the CLI prints a line).
    options and the other keywords: `trace`'s (a TraceOptions, the spec keywords), the same for
    every member: each member runs the spec on its own kernel (its attach choice, its
    bpftrace's version) and its own workload.
    """
    began = time.time()
    o, spec_opts = TraceOptions.split(options, keywords)
    chosen = members(hosts, inventory)
    jobs = arguments.integer("jobs", jobs, 1, "8")
    arguments.seconds("timeout", o.timeout, "60")
    run_options(lane="host", out=out, bpftrace=o.bpftrace, progress=progress,
                on_progress=on_host, report=o.report, plots=o.plots, force=o.force)
    trace_request(target, o, spec_opts)
    path, dirs, lanes, say = _set_up(chosen, o.bpftrace, out, "fleet", target, o.force,
                                     progress)
    each = replace(o, plots=False)  # drawn afterwards, one host at a time (_plots)

    def one(m: Member, lane: Lane) -> HostRun:
        t = trace(
            target, lane=lane, out=False if path is None else path / dirs[m.label],
            check=False, progress=say(m.label), options=each, **spec_opts,
        )
        error = None
        try:
            t.check()
        except HarnessError as err:
            error = str(err)
        return HostRun(m.label, m.lane, t, error, t.path)

    runs, stopped = _in_threads(chosen, lanes, jobs, one, on_host)
    done = Fleet(target, runs, path, stopped)
    if path is not None:
        with shielded(deliver=True):
            _write_fleet(done, began, jobs, "run")
            if o.report and o.plots:
                _plots(done)
    return done


def _plots(done: Fleet) -> None:
    """Each host's histogram PNGs, drawn here one host at a time: matplotlib's pyplot is not
    thread-safe, so the hosts' threads wrote their reports without them."""
    from harness.report.summary import write_report

    for r in done.runs:
        if r.path is None:
            continue
        try:
            write_report(r.path, plots=True)
        except (ImportError, HarnessError) as err:
            r.result.notes.append(f"plots not drawn: {err}")


def _set_up(
    chosen: list[Member], bpftrace: str | None, out: Out, kind: str, target: str, force: bool,
    progress: Progress | None,
) -> tuple[Path | None, dict[str, str], dict[str, Lane], Callable[[str], Progress]]:
    """What a fleet settles before any member starts: the release (an unknown name fails once,
    here, and a root is built once), the fleet's directory, each member's directory name and
    prepared lane, and each member's progress."""
    resolve(bpftrace)
    path = claim(out, kind, target, force)
    return path, _directories(chosen), _prepared(chosen), _per_host(progress)


def _directories(chosen: Sequence[Member]) -> dict[str, str]:
    return directory_names(chosen)


def _per_host(progress: Progress | None) -> Callable[[str], Progress]:
    """Each member's progress, its phases named after it, one caller at a time."""
    lock = threading.Lock()
    shown = progress or silent

    def for_host(label: str) -> Progress:
        def say(phase: str, done: float | None = None, total: float | None = None,
                unit: str = "") -> None:
            with lock:
                shown(f"{label}: {phase}", done, total, unit)

        return say

    return for_host


def _write_fleet(done: Fleet | FleetCrosscheck, began: float, jobs: int, kind: str) -> None:
    """fleet.json, and for a traced fleet one CSV per map over the fleet."""
    assert done.path is not None
    hosts = []
    for r in done.runs:
        entry: dict[str, Any] = {
            "host": r.label, "lane": r.lane, "ok": r.ok, "error": r.error,
            "dir": r.path.name if r.path is not None else None, "seconds": round(r.seconds, 3),
        }
        result = r.result
        if kind == "run" and result is not None:
            run = result.meta
            entry.update(kernel=run.capabilities.get("kernel"), attach=run.attach,
                         ended_by=run.ended_by, counts=run.counts,
                         bpftrace=run.bpftrace.get("version_text"))
        elif result is not None:
            entry.update(kernel=result.meta.kernel, attach=result.attach,
                         passed=result.passed, bpf_obj_sha256=result.bpf_obj_sha256)
        hosts.append(entry)
    meta: dict[str, Any] = {
        "schema": FLEET_SCHEMA, "kind": kind, "target": done.target, "jobs": jobs,
        "started_at": utc_iso(began), "ended_at": utc_iso(time.time()),
        "interrupted": signal.Signals(done.interrupted).name if done.interrupted else None,
        "hosts": hosts,
    }
    if isinstance(done, Fleet):
        tables = done.tables
        meta["maps"] = {name: {"csv": csv_name(name), "rows": len(t)} for name, t in
                        tables.items()}
        write_csvs(done.path, tables)
    else:
        meta["one_object_per_attach"] = done.one_object_per_attach
        meta["objects"] = {a: sorted(s) for a, s in done.objects().items()}
        with (done.path / "crosscheck.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FLEET_CROSSCHECK_COLUMNS)
            writer.writeheader()
            writer.writerows(done.rows)
    (done.path / "fleet.json").write_text(json.dumps(meta, indent=2) + "\n")


# --- crosscheck over a fleet ---------------------------------------------------------------------

FLEET_CROSSCHECK_COLUMNS = (
    "host", "lane", "kernel", "bpftrace", "attach", "bpftrace_events", "libbpf_events",
    "verdict", "core_relocations", "bpf_obj_sha256", "error",
)


@dataclass
class FleetCrosscheck(OneObjectPerAttach):
    """`fleet_crosscheck`'s answer: a row per member (FLEET_CROSSCHECK_COLUMNS, as
    crosscheck.csv holds them), each member's Crosscheck in `runs`, the directory."""

    target: str
    runs: list[HostRun]
    rows: list[dict[str, Any]]
    path: Path | None
    interrupted: int | None = None

    @property
    def passed(self) -> bool:
        """Every member exact (bpftrace and the twin equal), one .bpf.o per attach type."""
        return all(r["verdict"] == "pass" for r in self.rows) and self.one_object_per_attach


def fleet_crosscheck(
    target: str = "ktrace",
    *,
    hosts: Sequence[str] | None = None,
    inventory: Path | str | None = None,
    jobs: int = DEFAULT_JOBS,
    out: Out = None,
    progress: Progress | None = None,
    on_host: Callable[[HostRun], None] | None = None,
    options: CrosscheckOptions | None = None,
    **keywords: Any,
) -> FleetCrosscheck:
    """`crosscheck` on every member at once: the twin is built here once per attach type and
    the same `.bpf.o` runs on every member of that type, compared exactly with bpftrace there.

    hosts, inventory, jobs, on_host: as in `fleet`. out: one crosscheck directory per member,
    crosscheck.csv (a row per member) and fleet.json; None makes results/fleet-xc-<time>/.
    options and the other keywords: `crosscheck`'s (a CrosscheckOptions, the spec keywords).
    """
    began = time.time()
    o, spec_opts = CrosscheckOptions.split(options, keywords)
    chosen = members(hosts, inventory)
    jobs = arguments.integer("jobs", jobs, 1, "8")
    o = o.checked()
    run_options(lane="host", out=out, bpftrace=o.bpftrace, progress=progress,
                on_progress=on_host, force=o.force)
    crosscheck_request(target, o, spec_opts)
    path, dirs, lanes, say = _set_up(chosen, o.bpftrace, out, "fleet-xc", target, o.force,
                                     progress)

    def one(m: Member, lane: Lane) -> HostRun:
        try:
            x = crosscheck(
                target, lane=lane, out=False if path is None else path / dirs[m.label],
                progress=say(m.label), options=o, **spec_opts,
            )
        except Interrupted as stop:  # stopped: what it gathered is written, and kept here
            if stop.partial is None:
                raise
            return HostRun(m.label, m.lane, stop.partial, str(stop), stop.partial.path)
        bad = [name for name, v in x.maps.items() if not v.equal]
        return HostRun(m.label, m.lane, x, f"differs in {', '.join(bad)}" if bad else None,
                       x.path)

    runs, stopped = _in_threads(chosen, lanes, jobs, one, on_host)
    done = FleetCrosscheck(target, runs, [_crosscheck_row(r) for r in runs], path, stopped)
    if path is not None:
        with shielded(deliver=True):
            _write_fleet(done, began, jobs, "crosscheck")
    return done


def _events(frames: Mapping[str, pd.DataFrame], name: str | None) -> int | None:
    """The events one compared map accounts for (its value or count column's sum)."""
    frame = frames.get(name) if name is not None else None
    if frame is None:
        return None
    column = "value" if "value" in frame.columns else "count"
    return int(frame[column].sum())


def _crosscheck_row(r: HostRun) -> dict[str, Any]:
    x: Crosscheck | None = r.result
    first = next(iter(x.maps), None) if x is not None else None
    return {
        "host": r.label,
        "lane": r.lane,
        "kernel": x.meta.kernel if x is not None else "",
        "bpftrace": x.meta.bpftrace if x is not None else "",
        "attach": x.attach if x is not None else "",
        "bpftrace_events": _events(x.bpftrace, first) if x is not None else None,
        "libbpf_events": _events(x.libbpf, first) if x is not None else None,
        # a member cut short by a stop signal is no pass, whatever its partial maps show
        "verdict": "error" if x is None else "pass" if x.verdict()["passed"] else "FAIL",
        "core_relocations": " ".join(
            f"{k}@{v}" for k, v in sorted((x.meta.core_relocations or {}).items())
        ) if x is not None else "",
        "bpf_obj_sha256": x.bpf_obj_sha256 if x is not None else "",
        "error": r.error or "",
    }

"""run.json: one versioned record of a run, for `trace`, `crosscheck` and `parse`.

Every run directory's run.json is one of the dataclasses below, tagged with its `schema` (name
and version) and `kind`; `write_record` is the one writer and `read_record` the one reader
(`harness run --again`, `harness diff`, `harness report` and `harness parse` read through it).
Field by field in results/README.md.

Reading is forgiving where the data is old and strict where it is new: a run.json of a newer
schema version, or of another schema, is refused with a one-line error naming the fix; one
written before the schema field (or with schema 2, the trace record before `kind`) still reads,
its missing fields at their empty values, and the record's `notes` say which were missing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import HarnessError, UsageError

if TYPE_CHECKING:
    from harness.spec.model import ProbeSpec

SCHEMA_NAME = "ktrace-harness.run"
SCHEMA_VERSION = 3  # 2: the trace record, `schema` an int and no `kind`; none: older still
RUN_SCHEMA = SCHEMA_VERSION
ENDED_BY = ("workload-exit", "duration", "program-exit", "ctrl-c", "signal", "error")
RECORD_FILE = "run.json"


class RecordError(HarnessError):
    """A run.json that cannot be read: not JSON, another schema, or a newer version."""


@dataclass(frozen=True)
class Schema:
    """What a run.json is: its schema's name and version (a reader refuses a newer one)."""

    name: str = SCHEMA_NAME
    version: int = SCHEMA_VERSION


@dataclass(kw_only=True)
class RunRecord:
    """The fields every run.json has; a kind's record adds its own (TraceRecord, ...).

    `notes` and `unread` are the reader's, never written: notes say what an older run.json
    lacked; unread maps a field whose value could not be read back (a spec saved as text) to
    why, its value then being the field's empty one."""

    KIND: ClassVar[str] = ""
    command: str
    # per map, per printing: the entries and value total bpftrace printed (harness.output.printed)
    printed: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # where a CSV, .folded file or flame page disagrees with `printed` (one line each)
    printed_differences: list[str] = field(default_factory=list)
    schema: Schema = field(default_factory=Schema)
    notes: list[str] = field(default_factory=list, compare=False, repr=False)
    unread: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    # what the file held that the record does not (an older run.json's own fields), and which
    # of the record's fields it lacked: `as_read` gives the file's view back
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    missing: list[str] = field(default_factory=list, compare=False, repr=False)

    READER_ONLY: ClassVar[tuple[str, ...]] = ("notes", "unread", "extra", "missing")

    @property
    def kind(self) -> str:
        return self.KIND

    def as_dict(self) -> dict[str, Any]:
        """run.json's content: plain JSON data (the spec as its dict), schema and kind first."""
        data: dict[str, Any] = {"schema": {"name": self.schema.name,
                                           "version": self.schema.version},
                                "kind": self.KIND}
        for f in fields(self):
            if f.name not in self.READER_ONLY and f.name != "schema":
                value = getattr(self, f.name)
                data[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return data

    def as_read(self) -> dict[str, Any]:
        """The fields the file held, as it held them (an older run.json's own fields too, none
        it lacked): what a report shows."""
        hidden = {*self.missing, *(("kind",) if "schema" in self.missing else ())}
        data = {k: v for k, v in self.as_dict().items() if k not in hidden}
        return {**data, **self.extra}


@dataclass(kw_only=True)
class TraceRecord(RunRecord):
    """What run.json holds for one `trace`: the inputs, the choices made, and how it went.

    `spec` is the ProbeSpec that ran (None for a whole program); run.json stores it as
    `spec.to_dict()`, which `ProbeSpec.from_dict` reads back. Times: `started_at`/`ended_at`
    are ISO-8601 UTC wall-clock strings, `durations` are monotonic seconds per phase, so a
    clock step during a run cannot make them lie.
    """

    KIND: ClassVar[str] = "trace"
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


RunMeta = TraceRecord  # the name `Trace.meta`'s type had before crosscheck and parse joined it


@dataclass(kw_only=True)
class CrosscheckRecord(RunRecord):
    """A crosscheck's run.json (one for its bpftrace/ and libbpf/ parts; the libbpf part has
    no `printed`): the spec, both programs, the versions and CO-RE relocations, the times."""

    KIND: ClassVar[str] = "crosscheck"
    catalog: str | None
    spec: ProbeSpec | None
    attach: str
    attach_reason: str
    program: str
    twin_c: str
    twin_clang_warnings: str
    workload: list[str] | None
    workload_pid: int | None
    bpf_obj_sha256: str
    arch_define: str
    kernel: str
    bpftrace: str  # the release's version text
    bpftrace_origin: str
    libbpf: str | None
    libbpf_lost: int
    libbpf_insert_races: int
    core_relocations: dict[str, Any]
    lane: dict[str, Any]
    started_at: str
    ended_at: str
    durations: dict[str, float | None]
    ended_by: str = "workload-exit"


@dataclass(kw_only=True)
class ParseRecord(RunRecord):
    """`harness parse --csv`'s run.json: which file was read, how, and what it held."""

    KIND: ClassVar[str] = "parse"
    source: str
    format: str
    probes: int | None
    lines: list[str]


KINDS: dict[str, type[RunRecord]] = {
    c.KIND: c for c in (TraceRecord, CrosscheckRecord, ParseRecord)
}


def write_record(run_dir: Path, record: RunRecord | Mapping[str, Any]) -> Path:
    """Write run.json into run_dir: a record (a plain mapping only from tests' hand-made run
    directories); keys sorted."""
    data = record.as_dict() if isinstance(record, RunRecord) else dict(record)
    path = Path(run_dir) / RECORD_FILE
    path.write_text(json.dumps(data, indent=2, default=_jsonable, sort_keys=True) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return dataclasses.asdict(value)
    return str(value)


def read_record(run_dir: Path) -> RunRecord | None:
    """run_dir's run.json as its record, None when there is none. Refused (RecordError, one
    line naming the fix): a file that is no JSON object, another schema, a newer version."""
    path = Path(run_dir) / RECORD_FILE
    fix = "fix or delete run.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise RecordError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno})",
                          fix) from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{path} is not a run.json ({err})", fix) from None
    if not isinstance(data, dict):
        raise RecordError(f"{path} is not a run.json (a JSON {type(data).__name__}, not an "
                          "object)", fix)
    return record_of(data, path)


def record_of(data: Mapping[str, Any], path: Path | str = RECORD_FILE) -> RunRecord:
    """The record a run.json's data holds (see read_record)."""
    schema, kind = _schema_and_kind(data, path)
    cls = KINDS[kind]
    values: dict[str, Any] = {}
    missing: list[str] = []
    unread: dict[str, str] = {}
    for f in fields(cls):
        if f.name in RunRecord.READER_ONLY or f.name == "schema":
            continue
        if f.name not in data:
            missing.append(f.name)
            values[f.name] = _empty(f)
        elif f.name == "spec" and data["spec"] is not None:
            values["spec"], why = _spec(data["spec"])
            if why:
                unread["spec"] = why
        else:
            values[f.name] = data[f.name]
    names = {f.name for f in fields(cls)}
    extra = {k: v for k, v in data.items() if k not in names and k not in ("kind",)}
    if "spec" in unread:
        extra["spec"] = data["spec"]  # shown as it was written
    record = cls(**values, schema=schema, missing=missing, unread=unread, extra=extra)
    # Fields added over time have a default and say nothing; one a run always had is missing
    # only from a file written before it or by hand.
    lacked = [name for name in missing if _required(cls, name)]
    if lacked and schema.version < SCHEMA_VERSION:
        shown = ", ".join(lacked[:6]) + (f" and {len(lacked) - 6} more" if len(lacked) > 6
                                         else "")
        record.notes.append(f"{path} (written before schema {SCHEMA_VERSION}) lacks {shown}: "
                            "read as empty")
    record.notes += [f"{path}: {name} not read back ({why})" for name, why in unread.items()]
    if schema.version < SCHEMA_VERSION:  # shown as it was written (2, or not at all)
        record.missing.append("schema")
        if "schema" in data:
            record.extra["schema"] = data["schema"]
    return record


def _schema_and_kind(data: Mapping[str, Any], path: Path | str) -> tuple[Schema, str]:
    """The schema a run.json says it has (refusing another or a newer one) and its kind: an
    older file's is told from its fields."""
    raw = data.get("schema")
    if raw is None or (isinstance(raw, int) and not isinstance(raw, bool) and raw <= 2):
        version = 2 if raw == 2 else 1
        if raw is None and "twin_c" in data:
            return Schema(version=version), "crosscheck"
        if raw is None and "source" in data and "format" in data:
            return Schema(version=version), "parse"
        return Schema(version=version), "trace"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or \
            not isinstance(raw.get("version"), int) or isinstance(raw.get("version"), bool):
        raise RecordError(f"{path}: schema={raw!r:.60} is not a run.json schema",
                          f'fix or delete run.json (schema {{"name": "{SCHEMA_NAME}", '
                          f'"version": {SCHEMA_VERSION}}} is this harness\'s)')
    if raw["name"] != SCHEMA_NAME:
        raise RecordError(f"{path} is a {raw['name']!r:.60} file, not a run.json of "
                          f"{SCHEMA_NAME}", "pass a run directory written by ktrace-harness")
    if raw["version"] > SCHEMA_VERSION:
        raise RecordError(
            f"{path} has run.json schema version {raw['version']}, newer than this harness "
            f"reads ({SCHEMA_VERSION})",
            "upgrade ktrace-harness (pip install -U .), or read it with the harness that wrote it")
    kind = data.get("kind")
    if kind not in KINDS:
        raise RecordError(f"{path}: kind={kind!r:.60} is not one of {', '.join(KINDS)}",
                          "fix or delete run.json")
    return Schema(SCHEMA_NAME, raw["version"]), str(kind)


def _spec(value: Any) -> tuple[ProbeSpec | None, str]:
    """A run.json's `spec` read back, or None and why not (a spec written as text before
    schema 2, a hand-edited one)."""
    from harness.spec.model import ProbeSpec

    if not isinstance(value, dict):
        return None, f"{type(value).__name__}, not the spec's object"
    try:
        return ProbeSpec.from_dict(value), ""
    except UsageError as err:
        return None, err.cause


def _required(cls: type[RunRecord], name: str) -> bool:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default is MISSING and f.default_factory is MISSING


def _empty(f: Any) -> Any:
    """A missing field's value: its default, else the empty value of its type."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    text = str(f.type)
    if "None" in text:
        return None
    for prefix, value in (("dict", {}), ("list", []), ("str", ""), ("int", 0), ("float", 0.0)):
        if text.startswith(prefix):
            return value
    return None

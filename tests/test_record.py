"""run.json as one versioned record: trace, crosscheck and parse records round-trip through the
one writer and reader, a newer or foreign schema is refused in one line, and older run
directories still read (a warning only where a field is missing). Pure Python: no kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.report.record import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    CrosscheckRecord,
    ParseRecord,
    RecordError,
    RunRecord,
    TraceRecord,
    read_record,
    write_record,
)
from harness.report.summary import write_report
from harness.spec import catalog

SPEC = catalog.get("ktrace").equivalents["tracepoint"]
PRINTED = {"@c": [{"printing": 1, "entries": 1, "total": 3}]}


def trace_record(**changes: Any) -> TraceRecord:
    fields: dict[str, Any] = dict(
        command="harness run ktrace", target="ktrace", spec=SPEC, program="BEGIN {}",
        marker="KTRACE_READY_1", attach="tracepoint", attach_reason="chosen", capabilities={},
        workload=["true"], duration_s=None, timeout_s=60.0, workload_status=0, probes=2,
        exit_status=0, ended_by="workload-exit", error=None, printed_lines=[], diagnostics="",
        started_at="2026-12-04T17:00:00.000+00:00", ended_at="2026-12-04T17:00:01.000+00:00",
        durations={"total_s": 1.0}, printed=PRINTED, bpftrace={"name": "system"},
    )
    fields.update(changes)
    return TraceRecord(**fields)


def crosscheck_record() -> CrosscheckRecord:
    return CrosscheckRecord(
        command="harness crosscheck ktrace", catalog="ktrace", spec=SPEC, attach="tracepoint",
        attach_reason="chosen", program="BEGIN {}", twin_c="int x;", twin_clang_warnings="",
        workload=["udp_send"], workload_pid=7, bpf_obj_sha256="ab", arch_define="-D", kernel="6.18",
        bpftrace="bpftrace v0.17.0", bpftrace_origin="/usr/bin", libbpf="1.1", libbpf_lost=0,
        libbpf_insert_races=0, core_relocations={"sk_buff.len": 1}, lane={"name": "host"},
        started_at="t0", ended_at="t1", durations={"total_s": 1.0}, printed=PRINTED,
    )


def parse_record() -> ParseRecord:
    return ParseRecord(command="harness parse", source="/tmp/out.txt", format="text", probes=2,
                       lines=["hello"], printed=PRINTED)


@pytest.mark.parametrize("record", [trace_record(), crosscheck_record(), parse_record()],
                         ids=["trace", "crosscheck", "parse"])
def test_each_kind_round_trips_through_the_one_writer_and_reader(
    tmp_path: Path, record: RunRecord
) -> None:
    write_record(tmp_path, record)
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["schema"] == {"name": SCHEMA_NAME, "version": SCHEMA_VERSION}
    assert on_disk["kind"] == record.kind
    assert "notes" not in on_disk and "unread" not in on_disk  # the reader's, never written
    back = read_record(tmp_path)
    assert type(back) is type(record) and back == record
    assert back.notes == [] and back.as_dict() == on_disk == back.as_read()


def test_no_run_json_reads_as_none(tmp_path: Path) -> None:
    assert read_record(tmp_path) is None


@pytest.mark.parametrize(("schema", "kind", "said"), [
    ({"name": SCHEMA_NAME, "version": SCHEMA_VERSION + 1}, "trace", "newer than this harness"),
    ({"name": "someone-else.run", "version": 1}, "trace", "not a run.json of"),
    ("three", "trace", "is not a run.json schema"),
    ({"name": SCHEMA_NAME, "version": SCHEMA_VERSION}, "bench", "kind='bench'"),
])
def test_an_unknown_or_newer_schema_is_refused_in_one_line(
    tmp_path: Path, schema: Any, kind: str, said: str
) -> None:
    data = trace_record().as_dict()
    data.update(schema=schema, kind=kind)
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(RecordError, match=said) as err:
        read_record(tmp_path)
    assert "\n" not in str(err.value) and err.value.fix


def test_a_newer_schema_is_refused_by_again_report_and_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = trace_record().as_dict()
    data["schema"]["version"] = SCHEMA_VERSION + 1
    (tmp_path / "run.json").write_text(json.dumps(data))
    (tmp_path / "stacks.csv").write_text("kstack,value\nmain;f,3\n")
    for argv in (["run", "--again", str(tmp_path)], ["report", str(tmp_path)],
                 ["diff", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "d")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert f"version {SCHEMA_VERSION + 1}" in err and "upgrade" in err, argv
        assert "\n" not in err and "Traceback" not in err


def test_a_schema_2_run_json_still_reads_without_a_warning(tmp_path: Path) -> None:
    data = trace_record().as_dict()
    data.pop("kind")
    data["schema"] = 2
    (tmp_path / "run.json").write_text(json.dumps(data))
    back = read_record(tmp_path)
    assert isinstance(back, TraceRecord) and back.spec == SPEC and back.notes == []
    assert back.as_read()["schema"] == 2 and "kind" not in back.as_read()


def test_an_older_run_json_reads_and_says_what_it_lacks(tmp_path: Path) -> None:
    old = {"command": "harness run ktrace", "target": "ktrace", "spec": "ProbeSpec(...)",
           "started": 1764860000.5, "interrupted": False, "program": "BEGIN {}"}
    (tmp_path / "run.json").write_text(json.dumps(old))
    back = read_record(tmp_path)
    assert isinstance(back, TraceRecord)
    assert back.target == "ktrace" and back.spec is None and "spec" in back.unread
    assert back.as_read() == old  # its own fields, as written; none it lacked
    lacks = [n for n in back.notes if "lacks" in n]
    assert len(lacks) == 1 and "marker" in lacks[0] and f"schema {SCHEMA_VERSION}" in lacks[0]
    assert any("spec not read back" in n for n in back.notes)


def test_an_older_crosscheck_or_parse_run_json_is_told_by_its_fields(tmp_path: Path) -> None:
    xc = crosscheck_record().as_dict()
    for key in ("schema", "kind", "printed", "printed_differences"):
        xc.pop(key)
    (tmp_path / "run.json").write_text(json.dumps(xc))
    back = read_record(tmp_path)
    assert isinstance(back, CrosscheckRecord) and back.notes == []  # only defaults missing
    assert back.kernel == "6.18" and back.printed == {}
    (tmp_path / "run.json").write_text(json.dumps(
        {"command": "harness parse", "source": "x", "format": "json", "probes": 1, "lines": []}))
    assert isinstance(read_record(tmp_path), ParseRecord)


def test_report_and_diff_read_an_older_run_json_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"program": "kprobe:f { @s[kstack] = count(); }"}))
    (run / "s.csv").write_text("kstack,value\nmain;f,3\n")
    write_report(run, plots=False)
    summary = (run / "summary.md").read_text()
    assert "Note: run.json (written before schema 3) lacks" in summary
    starts = {line.split("|")[1].strip() for line in summary.splitlines() if line.startswith("|")}
    assert "kind" not in starts and "schema" not in starts and "command" not in starts
    assert main(["diff", str(run), str(run), "--out", str(tmp_path / "d")]) == 0
    err = capsys.readouterr().err
    assert err.count("lacks") == 2 and err.startswith("warning: A (")


def test_again_of_an_older_run_json_lacking_fields_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run is refused for what it lacks that --again needs (nothing bounds it), after the
    reader read it: a schema-less file is not refused for having no schema."""
    (tmp_path / "run.json").write_text(json.dumps(
        {"target": "ktrace", "spec": SPEC.to_dict()}))
    assert main(["run", "--again", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing bounds the run" in err and "\n" not in err


def test_parse_csv_writes_a_parse_record(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("Attaching 1 probe...\n@x: 3\n")
    assert main(["parse", str(out), "--csv", str(tmp_path / "p")]) == 0
    back = read_record(tmp_path / "p")
    assert isinstance(back, ParseRecord) and back.source == str(out.resolve())
    assert back.probes == 1 and back.printed["@x"][0]["total"] == 3


def test_a_record_error_is_a_harness_error() -> None:
    assert issubclass(RecordError, HarnessError)

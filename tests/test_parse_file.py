"""harness.parse_file, the library side of `harness parse`, called directly.

Held to independent readings: bpftrace's own `-f json` of the same program, read here with the
json module alone (not harness.output.parse), and a workload's own count of its calls; its
CSVs and run.json are read back with the csv and json modules.
"""

from __future__ import annotations

import csv
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import harness
from harness.paths import workload
from harness.workloads.native import build

# Deterministic maps of each kind bpftrace prints as one value per key (count, sum, int).
PROGRAM = """BEGIN {
  @n[1] = count(); @n[1] = count(); @n[2] = count();
  @sum["a"] = sum(5); @sum["a"] = sum(-2); @sum["b"] = sum(40);
  @neg[-5] = -3; @neg[0] = 0; @neg[-1] = 9;
  @one = 7;
  @h = hist(1); @h = hist(5); @h = hist(4000); @h = hist(4001);
  exit();
}
"""
CALLS = 300
GETPPID = """tracepoint:syscalls:sys_enter_getppid /pid == cpid/ {
  @calls = count(); @by_comm[comm] = count();
}
"""


def _bpftrace(program: Path, *flags: str) -> str:
    return subprocess.run(["bpftrace", *flags, str(program)], capture_output=True, text=True,
                          timeout=120, check=True).stdout


def _json_maps(text: str) -> dict[str, Any]:
    """bpftrace -f json's records, read with the json module only: map name -> its data."""
    maps: dict[str, Any] = {}
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            if record["type"] in ("map", "hist"):
                maps.update(record["data"])
    return maps


def _entries(frame: pd.DataFrame) -> dict[str, int]:
    """An int map's frame as {key as bpftrace's json spells it: value}."""
    if "key0" not in frame.columns:
        return {"": int(frame["value"].iloc[0])}
    return {str(k): int(v) for k, v in zip(frame["key0"], frame["value"], strict=True)}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same program's text and json output, saved as `bpftrace ... > FILE` would (its
    tests are `kernel` ones: skipped, with the reason, where BPF cannot run)."""
    d = tmp_path_factory.mktemp("saved")
    program = d / "program.bt"
    program.write_text(PROGRAM)
    (d / "out.txt").write_text(_bpftrace(program))
    (d / "out.json").write_text(_bpftrace(program, "-f", "json"))
    return d / "out.txt", d / "out.json"


def _as_json_says(parsed: harness.Parsed, said: dict[str, Any]) -> None:
    """The frames hold what bpftrace's own json output (read with the json module) says."""
    assert set(parsed.frames) == set(said) == {"@n", "@sum", "@neg", "@one", "@h"}
    for name in ("@n", "@sum", "@neg"):
        assert _entries(parsed.frames[name]) == {str(k): v for k, v in said[name].items()}, name
    assert _entries(parsed.frames["@one"]) == {"": said["@one"]}
    hist = parsed.frames["@h"]
    buckets = {(int(b["min"]), int(b["max"]) + 1): b["count"] for b in said["@h"] if b["count"]}
    assert {(int(lo), int(hi)): int(c) for lo, hi, c in
            zip(hist["lo"], hist["hi"], hist["count"], strict=True) if c} == buckets
    assert int(hist["count"].sum()) == 4


@pytest.mark.kernel
def test_a_saved_text_output_reads_as_bpftrace_json_says(saved: tuple[Path, Path]) -> None:
    text_file, json_file = saved
    parsed = harness.parse_file(text_file)
    assert parsed.format == "text" and parsed.output.probes == 1
    assert parsed.differences == [] and parsed.written is None and parsed.error is None
    _as_json_says(parsed, _json_maps(json_file.read_text()))


@pytest.mark.kernel
def test_the_json_file_is_guessed_and_gives_the_text_files_frames(
        saved: tuple[Path, Path]) -> None:
    from_text = harness.parse_file(saved[0])
    from_json = harness.parse_file(str(saved[1]))  # a str path, and no format: guessed
    assert from_json.format == "json" and from_json.program_from == ""
    _as_json_says(from_json, _json_maps(saved[1].read_text()))
    for name, frame in from_text.frames.items():
        order = list(frame.columns)
        pd.testing.assert_frame_equal(
            frame.sort_values(order[:-1]).reset_index(drop=True),
            from_json.frames[name].sort_values(order[:-1]).reset_index(drop=True), obj=name)


@pytest.mark.kernel
def test_the_csvs_hold_the_workloads_own_count(needs_bpf: None, tmp_path: Path) -> None:
    """A live count around a workload that counts its own calls: the frame, the CSV written by
    csv= and run.json all hold what the workload says it did."""
    loop = build(workload("syscall_loop.c"))
    assert loop is not None, "no C compiler (cc) on this machine"
    program = tmp_path / "calls.bt"
    program.write_text(GETPPID)
    run = subprocess.run(["bpftrace", "-c", f"{loop} --count {CALLS}", str(program)],
                         capture_output=True, text=True, timeout=120, check=True)
    said = run.stdout.splitlines()
    assert f"events {CALLS}" in "\n".join(said)  # the workload's own report
    saved = tmp_path / "stdout.txt"
    saved.write_text(run.stdout)
    parsed = harness.parse_file(saved, format="text", program=program, csv=tmp_path / "maps")
    assert parsed.check() is parsed and parsed.written == tmp_path / "maps"
    assert parsed.program_from == str(program)
    assert int(parsed.frames["@calls"]["value"].sum()) == CALLS
    assert int(parsed.frames["@by_comm"]["value"].sum()) == CALLS
    with (tmp_path / "maps" / "calls.csv").open() as fh:
        assert [int(r["value"]) for r in csv.DictReader(fh)] == [CALLS]
    record = json.loads((tmp_path / "maps" / "run.json").read_text())
    assert record["kind"] == "parse" and record["source"] == str(saved.resolve())
    assert record["printed"]["@calls"] == [{"printing": 1, "entries": 1, "total": CALLS}]
    # the workload's lines are printed lines, in order, not maps
    assert [line for line in parsed.output.lines if line.startswith("events ")] == [
        line for line in said if line.startswith("events ")]


def test_the_program_beside_the_file_keeps_a_printf_line_as_text(tmp_path: Path) -> None:
    """A printf line shaped like `@name: value` of a map the program does not have: read as
    a map without the program, a printed line with the program from run.json beside it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "stdout.txt").write_text('Attaching 1 probe...\n@fake: 3\n\n@real: 1\n')
    assert set(harness.parse_file(run / "stdout.txt").frames) == {"@fake", "@real"}
    (run / "run.json").write_text(json.dumps(
        {"program": 'BEGIN { printf("@fake: 3\\n"); @real = count(); exit(); }'}))
    parsed = harness.parse_file(run / "stdout.txt")
    assert set(parsed.frames) == {"@real"} and parsed.output.lines == ["@fake: 3"]
    assert parsed.program_from == str(run / "run.json")


def test_csvs_that_cannot_be_written_there_are_kept_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory named as one of the CSVs: the run is written to a temporary directory, the
    frames are all there, and the error names both places."""
    saved = tmp_path / "out.txt"
    saved.write_text("Attaching 1 probe...\n@x[1]: 2\n@x[2]: 5\n")
    into = tmp_path / "maps"
    (into / "x.csv").mkdir(parents=True)
    elsewhere = tmp_path / "tmp"  # the temporary directory, the test's own
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    parsed = harness.parse_file(saved, csv=into)
    assert isinstance(parsed.error, harness.HarnessError)
    assert parsed.written is not None and parsed.written.parent == elsewhere
    assert str(into) in str(parsed.error) and str(parsed.written) in str(parsed.error)
    with (parsed.written / "x.csv").open() as fh:
        assert sum(int(r["value"]) for r in csv.DictReader(fh)) == 7
    assert int(parsed.frames["@x"]["value"].sum()) == 7
    with pytest.raises(harness.HarnessError, match="could not write"):
        parsed.check()


@pytest.mark.parametrize(("keywords", "said"), [
    ({"path": 5}, ["path=5", "a path"]),
    ({"path": ""}, ["path=''", "a path"]),
    ({"format": "xml"}, ["format='xml'", "text, json"]),
    ({"program": 3}, ["program=3", "a path"]),
    ({"csv": True}, ["csv=True", "a path"]),
    ({"path": "/nonexistent/out.txt"}, ["cannot read /nonexistent/out.txt"]),
])
def test_a_wrong_argument_is_one_usage_error(tmp_path: Path, keywords: dict[str, Any],
                                             said: list[str]) -> None:
    saved = tmp_path / "out.txt"
    saved.write_text("@x: 1\n")
    args = {"path": saved, **keywords}
    with pytest.raises(harness.UsageError) as refused:
        harness.parse_file(args.pop("path"), **args)
    message = str(refused.value)
    assert "\n" not in message and all(word in message for word in said), message

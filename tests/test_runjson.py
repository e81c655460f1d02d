"""run.json: the spec round-trips as a dict, the file matches results/README.md's schema table,
and `harness run --again` repeats a recorded run with the same program text."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.api.inputs import spec_options
from harness.cli import main
from harness.errors import UsageError
from harness.paths import workload
from harness.report.record import ENDED_BY, RUN_SCHEMA
from harness.spec import catalog
from harness.spec.model import ProbeSpec

README = Path(__file__).resolve().parent.parent / "results" / "README.md"

# Probe lines as a user writes them, covering every spec field between them.
PROBE_LINES: list[tuple[str, dict[str, Any]]] = [
    ("tracepoint:syscalls:sys_enter_getppid", {"count_by": "comm"}),
    ("kprobe:udp_send_skb", {"arg": "skb=struct sk_buff *", "count_by": "kstack",
                             "collect": "skb->hash", "hist": "skb->len", "workload_pid": True}),
    ("tracepoint:net:net_dev_queue", {"hist": "args.len", "by": "comm,kstack"}),
    ("kprobe:udp_send_skb", {"arg": ["skb=struct sk_buff *", "sk=struct sock *"],
                             "lhist": "skb->len:0:2000:100", "filter": ["skb->len > 100",
                             "skb->hash != 0"], "pid": 1234, "comm": "python3",
                             "cgroup": "/sys/fs/cgroup/system.slice"}),
    ("kprobe:vfs_read", {"arg": ["f=struct file *", "buf=char *", "n=unsigned long"],
                         "sum": "n", "avg": "n", "min": "n", "max": "n", "stats": "n",
                         "by": "pid"}),
    ("kretprobe:vfs_read", {"count_by": "retval,tid,cpu"}),
    ("uprobe:/bin/bash:readline", {"count_by": "ustack"}),
    ("kfunc:udp_send_skb", {"arg": "skb=struct sk_buff *", "count_by": "skb->len"}),
]


def _all_specs() -> list[tuple[str, ProbeSpec]]:
    found = [
        (f"{name}/{attach}", spec)
        for name in catalog.names()
        for attach, spec in catalog.get(name).equivalents.items()
    ]
    return found + [(probe, spec_options(probe, opts)) for probe, opts in PROBE_LINES]


@pytest.mark.parametrize(("label", "spec"), _all_specs(), ids=[s[0] for s in _all_specs()])
def test_every_spec_round_trips_through_json(label: str, spec: ProbeSpec) -> None:
    data = json.loads(json.dumps(spec.to_dict()))  # what run.json holds
    back = ProbeSpec.from_dict(data)
    assert back == spec
    assert back.to_dict() == data  # also the fields equality ignores (notes)


def test_the_probe_lines_fill_every_spec_field() -> None:
    """The round-trip cases above are only worth something if they set every field."""
    specs = [spec_options(probe, opts) for probe, opts in PROBE_LINES]
    for key in ("args", "predicates", "pid", "comm", "cgroup", "workload_pid"):
        assert any(s.to_dict()[key] for s in specs), key
    agg_fields = {k for s in specs for a in s.to_dict()["aggs"] for k, v in a.items() if v}
    assert agg_fields >= {"map", "func", "value", "keys", "lhist"}
    funcs = {a["func"] for s in specs for a in s.to_dict()["aggs"]}
    assert funcs == {"count", "sum", "avg", "min", "max", "stats", "hist", "lhist", "collect"}


def test_key_names_and_notes_round_trip() -> None:
    spec = catalog.get("ktrace").equivalents["tracepoint"]
    data = spec.to_dict()
    data["aggs"][0]["key_names"] = ["stack"]
    data["notes"] = ["kept"]
    assert ProbeSpec.from_dict(data).to_dict() == data


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d.pop("probe"), "no field 'probe'"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d["aggs"][0].update(lhist=[1, 2]), "lhist"),
        (lambda d: d.update(pid="12"), "pid"),
        (lambda d: d["aggs"][0].update(value="skb->len; exit()"), "skb->len"),
    ],
)
def test_a_malformed_spec_dict_is_a_one_line_usage_error(change: Any, says: str) -> None:
    data = catalog.get("ktrace").equivalents["kprobe"].to_dict()
    change(data)
    with pytest.raises(UsageError, match=re.escape(says)) as err:
        ProbeSpec.from_dict(data)
    assert "\n" not in str(err.value)


def documented_fields() -> set[str]:
    """The field column of results/README.md's top-level run.json table."""
    text = README.read_text().split("## run.json", 1)[1]
    table = text.split("| field | type | meaning |", 1)[1].split("\n\n", 1)[0]
    return {m.group(1) for m in re.finditer(r"^\| (\w+) \|", table, re.M)}


def _keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys_anywhere(v)}
    return set()


def _run(argv: list[str]) -> None:
    assert main([*argv, "-q"]) == 0


LOOP = f"{sys.executable} {workload('syscall_loop.py')} --count 500"
GETPPID = ["run", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm", "-c", LOOP]


@pytest.mark.kernel
def test_a_real_run_json_matches_the_documented_schema(tmp_path: Path) -> None:
    _run([*GETPPID, "--out", str(tmp_path / "r")])
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert set(meta) == documented_fields()
    assert "interrupted" not in _keys_anywhere(meta)
    assert meta["schema"] == {"name": "ktrace-harness.run", "version": RUN_SCHEMA}
    assert meta["kind"] == "trace" and meta["again_of"] is None
    # The spec is the one the probe line describes, built here independently of the run.
    expected = spec_options("tracepoint:syscalls:sys_enter_getppid", {"count_by": "comm"})
    assert ProbeSpec.from_dict(meta["spec"]) == expected
    started = datetime.fromisoformat(meta["started_at"])
    ended = datetime.fromisoformat(meta["ended_at"])
    assert started.utcoffset() == ended.utcoffset() == UTC.utcoffset(None)
    assert started <= ended
    assert meta["ended_by"] in ENDED_BY and meta["ended_by"] == "workload-exit"
    assert meta["workload_status"] == 0 and meta["exit_status"] == 0 and meta["error"] is None
    d = meta["durations"]
    assert set(d) == {"setup_s", "attach_s", "run_s", "stop_s", "parse_s", "total_s"}
    assert all(isinstance(v, float) and v >= 0 for v in d.values()), d
    assert d["total_s"] >= d["setup_s"] + d["attach_s"]
    types = {
        "command": str, "target": str, "program": str, "marker": str, "attach": str,
        "attach_reason": str, "capabilities": dict, "workload": list, "timeout_s": float,
        "probes": int, "printed_lines": list, "diagnostics": str, "warnings": list,
        "counts": dict, "bpftrace": dict, "lane": dict,
    }
    for key, kind in types.items():
        assert isinstance(meta[key], kind), (key, meta[key])
    assert meta["duration_s"] is None and meta["lane"]["name"] == "host"
    assert meta["marker"] in meta["program"]


@pytest.mark.kernel
def test_again_reruns_a_recorded_run_with_the_same_program(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _run([*GETPPID, "--out", str(first)])
    _run(["run", "--again", str(first), "--out", str(second)])
    old = json.loads((first / "run.json").read_text())
    new = json.loads((second / "run.json").read_text())
    # Each run's BEGIN prints its own ready marker (a timestamp, so that a stale line from an
    # earlier run cannot be taken for this one): both programs are compared with their own
    # recorded marker replaced by one token, and every other character must match.
    assert old["marker"] != new["marker"]
    assert (old["program"].replace(old["marker"], "MARKER")
            == new["program"].replace(new["marker"], "MARKER"))
    assert old["marker"] in old["program"] and new["marker"] in new["program"]
    assert new["again_of"] == str(first)
    for key in ("target", "spec", "workload", "duration_s", "attach", "bpftrace"):
        assert new[key] == old[key], key
    assert new["lane"]["name"] == old["lane"]["name"]
    assert new["workload_status"] == 0 and new["ended_by"] == "workload-exit"


def test_again_on_a_directory_without_run_json_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--again", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no run.json" in err and "\n" not in err


def test_again_with_a_target_or_spec_options_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--again", str(tmp_path), "ktrace"]) == 2
    err = capsys.readouterr().err.strip()
    assert "takes no target" in err and "\n" not in err
    assert main(["run", "--again", str(tmp_path), "--count-by", "comm", "-d", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--duration" in err and "--count-by" in err and "\n" not in err


def test_again_refuses_an_old_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"target": "ktrace", "spec": "ProbeSpec(...)"}))
    assert main(["run", "--again", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "before schema 2" in err and "cannot be run again" in err and "\n" not in err.strip()


def test_run_without_target_or_again_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "no target" in capsys.readouterr().err

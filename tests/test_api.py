"""The public API: `import harness`, then trace and crosscheck from Python, as a notebook would."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import assert_reparses_to

import harness

kernel = pytest.mark.usefixtures("needs_bpf")


def test_all_names_resolve_and_are_documented() -> None:
    for name in harness.__all__:
        obj = getattr(harness, name)
        assert obj.__doc__, f"harness.{name} has no docstring"
    assert issubclass(harness.NoAttachPoint, harness.HarnessError)
    assert harness.catalog.get("ktrace").equivalents["tracepoint"].probe.kind == "tracepoint"


def test_nothing_bounds_a_probe_without_workload_or_duration() -> None:
    with pytest.raises(harness.UsageError, match="nothing bounds this run"):
        harness.trace("tracepoint:syscalls:sys_enter_getppid", count_by="comm", out=False)


def test_unknown_spec_option_is_a_usage_error() -> None:
    with pytest.raises(harness.UsageError, match="unknown spec option"):
        harness.trace("tracepoint:syscalls:sys_enter_getppid", count_bye="comm", duration=1)


@kernel
def test_trace_ktrace_frames_count_the_workloads_sends(tmp_path: Path) -> None:
    n = 25
    t = harness.trace("ktrace", count=n, sizes="100", out=tmp_path, report=False)
    assert t.path == tmp_path and t.error is None
    assert int(t.frames["@stacks"]["value"].sum()) == n  # the workload sent exactly n
    assert t.meta.workload_status == 0 and t.meta.attach in ("kprobe", "kfunc", "tracepoint")
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["program"] == t.meta.program and on_disk["attach"] == t.meta.attach


@kernel
def test_trace_a_probe_line_with_spec_keywords_and_no_run_dir() -> None:
    loop = [sys.executable, str(Path(harness.__file__).parent / "workloads" / "syscall_loop.py")]
    t = harness.trace(
        "tracepoint:syscalls:sys_enter_getppid",
        workload=[*loop, "--count", "1500"],
        count_by="comm",
        workload_pid=True,
        out=False,
    )
    assert t.path is None
    assert int(t.frames["@count"]["value"].sum()) == 1500


@kernel
def test_a_probe_that_cannot_attach_raises_a_typed_error() -> None:
    with pytest.raises(harness.BpftraceError):
        harness.trace("tracepoint:net:nope_no_such", count_by="comm", duration=1, out=False)


@kernel
def test_a_failing_workload_is_kept_in_the_trace_when_not_checked(tmp_path: Path) -> None:
    t = harness.trace("tracepoint:syscalls:sys_enter_getppid", count_by="comm",
                      workload=["sh", "-c", "exit 3"], out=False, check=False)
    assert t.meta.workload_status == 3
    with pytest.raises(harness.HarnessError, match="status 3"):
        t.check()


@kernel
def test_crosscheck_passes_with_per_map_verdicts(tmp_path: Path) -> None:
    x = harness.crosscheck("ktrace", count=40, out=tmp_path)
    assert x.passed and set(x.maps) == {"@stacks", "@hash", "@len"}
    assert all(v.equal and v.diff.empty for v in x.maps.values())
    assert json.loads((tmp_path / "verdict.json").read_text())["passed"] is True
    # The raw stdout kept in the run directory re-reads to exactly the frames that were compared.
    assert_reparses_to(tmp_path, x)
    # The bpftrace part holds what bpftrace printed, map by map; the twin's own counts (read
    # from its BPF maps, not from bpftrace's text) are the independent reading of each total.
    bt_meta = json.loads((tmp_path / "bpftrace" / "run.json").read_text())
    assert bt_meta["printed_differences"] == []
    for name in ("@stacks", "@len"):
        (only,) = bt_meta["printed"][name]
        frame = x.libbpf[name]
        assert only["total"] == int(frame["value" if "value" in frame else "count"].sum()) > 0


@kernel
def test_crosscheck_mismatch_gives_diff_frames() -> None:
    # Past pid_max: no process can have that pid (pid + 1 did, once, on a busy machine, and
    # sent a datagram the twin counted).
    beyond = int(Path("/proc/sys/kernel/pid_max").read_text())
    x = harness.crosscheck("ktrace", count=10, libbpf_pid_offset=beyond, out=False)
    assert not x.passed and x.path is None
    stacks = x.maps["@stacks"].diff
    assert list(stacks.columns) == ["key", "bpftrace", "libbpf"]
    assert int(stacks["bpftrace"].sum()) == 10 and int(stacks["libbpf"].sum()) == 0


def test_matrix_and_its_result_are_exported() -> None:
    assert {"matrix", "Matrix", "again"} <= set(harness.__all__)
    row = {"attach": "kprobe", "bpf_obj_sha256": "a", "verdict": "pass", "versions_agree": "-"}
    one = harness.Matrix([row, {**row}], None)
    assert one.passed and one.objects() == {"kprobe": {"a"}}
    two = harness.Matrix([row, {**row, "bpf_obj_sha256": "b"}], None)
    assert not two.passed  # two objects for one attach type break CO-RE's promise

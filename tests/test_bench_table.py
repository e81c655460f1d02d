"""`harness bench --kernels host --bpftrace 0.17,0.27`: a bench per kernel x release and one
table of in-kernel ns per event per kernel x release x tracer, read against each cell's own CSV
(the table's medians must be the medians of that file's rounds); the PMU probe against perf's
own answer; scripts/bench_repeat.py's rows against the invocations' CSVs. No timing asserted."""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
N = 2000


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.kernel
def test_one_table_per_kernel_release_and_tracer(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "syscalls", "--kernels", "host",
         "--bpftrace", "0.17,0.27", "--rounds", "2", "--max-rounds", "2", "--warmup", "0",
         "--events", str(N), "--out", str(tmp_path), "--no-report", "-q"],
        capture_output=True, text=True, check=False, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = _rows(tmp_path / "syscalls-table.csv")
    assert [(r["kernel_series"], r["bpftrace"], r["tracer"]) for r in table] == [
        ("host", f"v{v}", t) for v in ("0.17.0", "0.27.0") for t in ("floor", "bpftrace", "libbpf")
    ]
    for row in table:
        cell = _rows(tmp_path / row["csv"])
        assert {c["bpftrace_version"] for c in cell} == {f"bpftrace {row['bpftrace']}"}
        own = [float(c["kernel_ns_per_event"]) for c in cell if c["mode"] == row["tracer"]]
        assert len(own) == 2 and row["rounds"] == "2" and row["attach"] == "tracepoint"
        assert float(row["kernel_ns_per_event"]) == pytest.approx(statistics.median(own), abs=0.06)
        assert float(row["kernel_lo"]) <= float(row["kernel_ns_per_event"]) <= float(
            row["kernel_hi"])
        above = [float(c["program_ns_per_event"]) for c in cell
                 if c["mode"] == "both:" + row["tracer"] and c["program_ns_per_event"]]
        if row["tracer"] == "floor":
            assert above == [] and row["above_floor_ns_per_event"] == ""
        else:
            assert float(row["above_floor_ns_per_event"]) == pytest.approx(
                statistics.median(above), abs=0.06)
        assert row["pmu"]  # available, or why not
    ratios = [r for r in table if r["ratio_to_twin"]]
    assert [r["tracer"] for r in ratios] == ["bpftrace", "bpftrace"]
    assert all("of the twin in the kernel above the floor" in r["verdict"]
               or r["verdict"].startswith("inconclusive") for r in ratios)
    md = (tmp_path / "syscalls-table.md").read_text()
    assert "| host (" in md and "Cycles and instructions per run" in md
    assert (tmp_path / "syscalls-table.png").read_bytes()[:4] == b"\x89PNG"
    for release in ("0.17.0", "0.27.0"):  # each cell is an ordinary bench's files
        assert (tmp_path / f"syscalls-bpftrace{release}.md").exists()


def test_kernels_and_a_lane_are_one_question_too_many(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "syscalls", "--kernels", "host",
         "--lane", "vm:6.1", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 2 or done.returncode == 1
    assert "--kernels and --lane vm:6.1 both say where to run" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.kernel
def test_pmu_probe_agrees_with_perf_and_bpftool() -> None:
    import ctypes
    import os
    import struct

    from harness.host import pmu

    # the probe's own call opens a software clock counter: its attr layout and syscall are right
    attr = ctypes.create_string_buffer(pmu.PERF_ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, 1, pmu.PERF_ATTR_SIZE, 0)  # PERF_TYPE_SOFTWARE, cpu-clock
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(pmu.SYS_PERF_EVENT_OPEN["x86_64"], attr, 0, -1, -1, 0)
    assert fd >= 0
    os.close(fd)
    # the kernel lists a registered core PMU under the event sources (x86: cpu, hybrid: cpu_core)
    sources = Path("/sys/bus/event_source/devices")
    registered = any((sources / name).exists() for name in ("cpu", "cpu_core", "armv8_pmuv3"))
    assert (pmu.hardware_counters() is None) == registered, sorted(os.listdir(sources))
    bpftool = subprocess.run(["bpftool", "prog", "profile", "help"], capture_output=True,
                             text=True, check=False, timeout=60)
    unsupported = "not supported" in bpftool.stdout + bpftool.stderr
    assert (pmu.bpftool_profile() is not None) == unsupported
    state = pmu.state()
    assert state == "available" or state.startswith("not measured here: ")


@pytest.mark.kernel
def test_repeat_script_reads_each_invocation(tmp_path: Path) -> None:
    out = tmp_path / "repeat.csv"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_repeat.py"), "--runs", "2", "--csv",
         str(out), "--keep", str(tmp_path / "kept"), "--", "syscalls", "--rounds", "1",
         "--max-rounds", "1", "--warmup", "0", "--events", str(N)],
        capture_output=True, text=True, check=False, timeout=900,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: the two did not agree
    rows = _rows(out)
    assert [r["kind"] for r in rows] == ["invocation", "invocation", "agreement"]
    for n, row in enumerate(rows[:2], 1):
        (cell,) = [p for p in (tmp_path / "kept" / f"invocation-{n}").glob("*.csv")
                   if not p.name.endswith(".programs.csv")]
        table = _rows(cell)
        above = {r["mode"]: float(r["program_ns_per_event"]) for r in table
                 if r["mode"] in ("both:bpftrace", "both:libbpf")}
        # one round: the headline ratio is that round's bpftrace/twin above the floor
        assert float(row["kernel_ratio"]) == pytest.approx(
            above["both:bpftrace"] / above["both:libbpf"], rel=1e-3)
        assert row["load_before"].count("/") == 2 and row["rounds"] == "1"
    assert rows[2]["agree"] in ("yes", "no") and float(rows[2]["deviation"]) >= 0
    assert (done.returncode == 0) == (rows[2]["agree"] == "yes")
    assert "Repeatability" in out.with_suffix(".md").read_text()

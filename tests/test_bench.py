"""harness.compare.bench on the real kernel: the syscall workload untraced and under bpftrace.

No timing is asserted: only that samples exist, counts match the workload's N and the
derived numbers are finite.
"""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.compare import bench
from harness.report.summary import write_report

REPO = Path(__file__).resolve().parent.parent
LOOP = REPO / "harness" / "workloads" / "syscall_loop.py"
N = 20_000


def loop_workload(*extra: str) -> bench.Workload:
    return bench.Workload([sys.executable, str(LOOP), "--count", str(N), *extra], N, "getppid loop")


def bpftrace_counter() -> bench.Tracer:
    marker = "BENCH_TEST_READY"

    def argv(pid: int) -> list[str]:
        program = (
            f'BEGIN {{ printf("{marker}\\n"); }} '
            f"tracepoint:syscalls:sys_enter_getppid /pid == {pid}/ {{ @calls = count(); }}"
        )
        return ["bpftrace", "-e", program]

    def count(out: str) -> int:
        match = re.search(r"^@calls: (\d+)$", out, re.M)
        return int(match.group(1)) if match else 0

    return bench.Tracer("bpftrace", argv, lambda line: marker in line, count)


@pytest.mark.parametrize("flavour", [[], ["--python"]], ids=["c-loop", "python-loop"])
def test_workload_protocol(flavour: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, str(LOOP), "--count", "1000", "--wait-go", *flavour],
        input="go\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    first, last = proc.stdout.splitlines()[0], proc.stdout.splitlines()[-1]
    assert re.fullmatch(r"pid \d+", first)
    match = re.fullmatch(r"events 1000 elapsed_ns (\d+)", last)
    assert match and int(match.group(1)) > 0


def test_rounds_csv_summary_and_report(needs_bpf: None, tmp_path: Path) -> None:
    samples = bench.run_rounds(loop_workload(), [bpftrace_counter()], rounds=2, warmup=0)
    assert [(s.round, s.mode) for s in samples] == [
        (0, "untraced"),
        (0, "bpftrace"),
        (1, "untraced"),
        (1, "bpftrace"),
    ]
    traced = [s for s in samples if s.mode == "bpftrace"]
    assert all(s.events_counted == N for s in traced), [s.events_counted for s in traced]
    for s in traced:
        assert s.overhead_ns_per_event is not None and math.isfinite(s.overhead_ns_per_event)
        assert s.attach_ms is not None and s.attach_ms > 0
        assert s.peak_rss_kib is not None and s.peak_rss_kib > 1024  # bpftrace is MiBs, not KiBs

    result = bench.BenchResult(
        "unit",
        loop_workload(),
        "tracepoint",
        samples,
        bench.environment(),
        "2026-01-01T00:00:00Z",
    )
    path = bench.write_csv(result, tmp_path / "unit.csv")
    with path.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == bench.ROW_FIELDS
        table = list(reader)
    assert len(table) == 4
    for row in table:
        assert row["kernel"] and row["cpu"] and row["git_rev"] and row["attach"] == "tracepoint"
        assert row["bpftrace_version"].startswith("bpftrace v")
        assert float(row["ns_per_event"]) > 0
    md = bench.summary_markdown(result)
    assert "| bpftrace |" in md and "| untraced |" in md and f"{N}" in md

    written = write_report(tmp_path)
    png = tmp_path / "unit.bench.png"
    assert png in written and png.read_bytes()[:4] == b"\x89PNG"


def test_bad_workload_is_one_clear_error(tmp_path: Path) -> None:
    silent = bench.Workload([sys.executable, "-c", "print('hello')"], 1, "silent")
    with pytest.raises(bench.BenchError, match="did not print 'pid N' first"):
        bench.run_sample(silent, None, 0, timeout=30)


def test_ratio_needs_both_tracers() -> None:
    s = [
        bench.Sample(0, "bpftrace", 10, 10, 100, overhead_ns_per_event=30.0),
        bench.Sample(0, "libbpf", 10, 10, 100, overhead_ns_per_event=20.0),
        bench.Sample(1, "bpftrace", 10, 10, 100, overhead_ns_per_event=30.0),
    ]
    assert bench.overhead_ratios(s) == [1.5]


def test_cli_bench_writes_csv_md_and_png(needs_bpf: None, tmp_path: Path) -> None:
    n = 5000
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "bench",
            "syscalls",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--events",
            str(n),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    with (tmp_path / "syscalls.csv").open() as fh:
        table = list(csv.DictReader(fh))
    # syscalls now has a twin too: generated from the same spec as the bpftrace program
    assert [r["mode"] for r in table] == ["untraced", "bpftrace", "libbpf"]
    assert table[1]["events_counted"] == table[2]["events_counted"] == str(n)
    assert math.isfinite(float(table[1]["overhead_ns_per_event"]))
    assert "sys_enter_getppid" in (tmp_path / "syscalls.bt").read_text()
    assert 'SEC("tp/syscalls/sys_enter_getppid")' in (tmp_path / "syscalls.bpf.c").read_text()
    md = (tmp_path / "syscalls.md").read_text()
    assert "| bpftrace |" in md and "Goals:" in md
    assert (tmp_path / "syscalls.bench.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "summary.md").exists()


def test_cli_bench_unknown_name_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "nosuch", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    assert "no benchmark named 'nosuch'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_forced_attach_must_exist_in_catalog() -> None:
    from harness.compare import bench_cases
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="syscalls has no kprobe equivalent"):
        bench_cases.build("syscalls", 10, ["bpftrace"], attach="kprobe")
    with pytest.raises(UsageError, match="unknown mode 'perf'"):
        bench_cases.build("ktrace", 10, ["perf"])

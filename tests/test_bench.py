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
from bench_files import one_round, programs_measured

from harness.compare import bench
from harness.lanes.base import HOST
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
    match = re.fullmatch(r"events 1000 elapsed_ns (\d+) cpu_ns (\d+)", last)
    # the loop's CPU time is its own: never more than the wall time around it (+1 ms of clocks)
    assert match and 0 < int(match.group(2)) <= int(match.group(1)) + 1_000_000


def test_rounds_csv_summary_and_report(needs_bpf: None, tmp_path: Path) -> None:
    plan = bench.Rounds(rounds=2, max_rounds=2, warmup=0)
    samples = bench.run_rounds(loop_workload(), [bpftrace_counter()], plan)
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
        # the kernel's clock: the one program ran at least once per getppid() of the workload
        assert s.programs and len(s.programs) == 1 and s.programs[0].run_cnt >= N
        assert s.kernel_ns is not None and s.kernel_ns > 0
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
    assert [r["programs"] for r in table] == ["", "1", "", "1"]
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
    from harness.compare import stats

    s = [
        bench.Sample(0, "bpftrace", 10, 10, 100, overhead_ns_per_event=30.0),
        bench.Sample(0, "libbpf", 10, 10, 100, overhead_ns_per_event=20.0),
        bench.Sample(1, "bpftrace", 10, 10, 100, overhead_ns_per_event=30.0),
    ]
    assert stats.paired(s, "overhead_ns_per_event", "bpftrace", "libbpf") == [(30.0, 20.0)]
    assert stats.compare(s, "kernel_ns_per_event") is None  # no round read the kernel's clock


def test_cli_bench_writes_csv_md_and_png(needs_bpf: None, tmp_path: Path) -> None:
    n = 5000
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "syscalls", *one_round(n, tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    with (tmp_path / "syscalls.csv").open() as fh:
        table = list(csv.DictReader(fh))
    # syscalls has a twin: generated from the same spec as the bpftrace program; the floor is
    # an empty program on the same tracepoint and counts nothing
    # ... and both:* is the run with bpftrace and the twin attached at once: each of the two
    # saw every one of the workload's own events, and each one's programs ran on each
    # (with the floor beside them, whose in-kernel cost on those events each pays too)
    assert [r["mode"] for r in table] == [
        "untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf",
    ]
    counted = [r["events_counted"] for r in table]
    assert counted[2:4] == counted[5:] == [str(n)] * 2 and counted[1] == counted[4] == ""
    assert len({r["elapsed_ns"] for r in table[4:]}) == 1  # one run of the workload
    assert {r["overhead_ns_per_event"] for r in table[4:]} == {""}
    floor_ns = float(table[4]["kernel_ns_per_event"])
    for row in table[5:]:
        above = float(row["kernel_ns_per_event"]) - floor_ns
        assert math.isclose(float(row["program_ns_per_event"]), above, abs_tol=0.002)
    for row in table[1:4]:
        assert math.isfinite(float(row["overhead_ns_per_event"]))
    for row in table[1:]:
        assert int(row["kernel_runs"]) >= n and float(row["kernel_ns_per_event"]) > 0
    measured = programs_measured(tmp_path, table)
    assert "sys_enter_getppid" in measured["bpftrace"]
    assert 'SEC("tp/syscalls/sys_enter_getppid")' in measured["libbpf"]
    assert "return 0;" in measured["floor"]
    with (tmp_path / "syscalls.programs.csv").open() as fh:
        programs = list(csv.DictReader(fh))
    assert {p["mode"] for p in programs} == {
        "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf",
    }
    assert {p["name"] for p in programs if p["mode"] == "floor"} == {"twin_floor"}
    md = (tmp_path / "syscalls.md").read_text()
    assert "| bpftrace |" in md and "Goals:" in md
    # one round gives no interval: each verdict says so rather than quote a bare ratio
    verdicts = [line for line in md.splitlines()
                if line.startswith(("- inconclusive", "- bpftrace costs"))]
    assert len(verdicts) >= 3 and all("noise unknown" in v for v in verdicts), md
    assert "on the same events (both attached in one run)" in md
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
        bench_cases.build("syscalls", 10, ["bpftrace"], attach="kprobe", lane=HOST)
    with pytest.raises(UsageError, match=r"unknown mode 'perf'.*floor,bpftrace,libbpf"):
        bench_cases.build("ktrace", 10, ["perf"], lane=HOST)


def test_rounds_rotate_and_are_added_until_narrow(
    needs_bpf: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round starts at the next run; the run with both tracers attached at once attaches
    them in an order alternating by round; rounds past the minimum are added only while the
    headline ratio's interval is wider than asked, up to the maximum."""
    import dataclasses

    order: list[tuple[int, str]] = []
    real, real_together = bench.run_sample, bench.run_together

    def recorded(workload: bench.Workload, tracer: bench.Tracer | None, round_no: int,
                 *args: object) -> bench.Sample:
        order.append((round_no, tracer.mode if tracer else "untraced"))
        return real(workload, tracer, round_no, *args)  # type: ignore[arg-type]

    def together(workload: bench.Workload, tracers: list[bench.Tracer], round_no: int,
                 *args: object) -> list[bench.Sample]:
        order.append((round_no, "both, first " + tracers[0].mode))
        return real_together(workload, tracers, round_no, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench, "run_sample", recorded)
    monkeypatch.setattr(bench, "run_together", together)
    tracers = [bpftrace_counter(), dataclasses.replace(bpftrace_counter(), mode="libbpf")]
    loose = bench.Rounds(rounds=2, max_rounds=4, warmup=0, precision=0.99)
    samples = bench.run_rounds(loop_workload(), tracers, loose)
    assert order == [
        (0, "untraced"), (0, "bpftrace"), (0, "libbpf"), (0, "both, first bpftrace"),
        (1, "bpftrace"), (1, "libbpf"), (1, "both, first libbpf"), (1, "untraced"),
    ]
    modes = ["untraced", "bpftrace", "libbpf", "both:bpftrace", "both:libbpf"]
    assert [s.mode for s in samples] == modes * 2  # mode order
    both = [s for s in samples if s.mode.startswith("both:")]
    assert all(s.events_counted == N and s.kernel_runs and s.kernel_runs >= N for s in both)
    order.clear()
    strict = bench.Rounds(rounds=2, max_rounds=4, warmup=0, precision=1e-9)
    samples = bench.run_rounds(loop_workload(), tracers, strict)
    assert sorted({r for r, _ in order}) == [0, 1, 2, 3]
    assert order[8:12] == [
        (2, "libbpf"), (2, "both, first bpftrace"), (2, "untraced"), (2, "bpftrace"),
    ]
    assert len({s.round for s in samples}) == 4
    order.clear()
    apart = bench.Rounds(rounds=1, max_rounds=1, warmup=0, together=False)
    bench.run_rounds(loop_workload(), tracers, apart)
    assert order == [(0, "untraced"), (0, "bpftrace"), (0, "libbpf")]

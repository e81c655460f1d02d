"""`harness bench ktrace --lane vm`: the same benchmark inside a Debian 6.1 guest, where the seed's
kprobe:udp_send_skb exists, through the Lane object: the guest runs the workload and the two
tracers; programs, the twin and the counting stay on the host. Counts only; no timing asserted."""

from __future__ import annotations

import csv
import math
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_files import one_round
from processes import reaped

from harness.cli import main


@pytest.fixture
def vm_outdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from test_vm import vm_unavailable_reason

    from harness.lanes.vm import _rw_parent

    reason = vm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    path = _rw_parent() / f"test-bench-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KTRACE_RESULTS", str(path / "runs"))  # the guest's scratch run dir
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.vm
def test_bench_ktrace_in_the_vm_uses_the_kprobe(vm_outdir: Path) -> None:
    n = 100
    # one table across kernels x releases: the 6.1 guest's kprobe beside the host's tracepoint,
    # each with bpftrace 0.17 and 0.27 (the guest runs 0.27 from the forky root, as the host does)
    argv = [
        "bench",
        "ktrace",
        "--kernels",
        "6.1,host",
        "--bpftrace",
        "0.17,0.27",
        *one_round(n, vm_outdir / "bench"),
    ]
    assert main(argv) == 0
    out = vm_outdir / "bench"
    guest: dict[str, list[dict[str, str]]] = {}
    for release in ("0.17.0", "0.27.0"):
        stem = f"ktrace-vm6.1-bpftrace{release}"
        with (out / f"{stem}.csv").open() as fh:
            rows = guest[release] = list(csv.DictReader(fh))
        assert [r["mode"] for r in rows] == [
            "untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace",
            "both:libbpf",
        ]
        assert {r["attach"] for r in rows} == {"kprobe"}
        assert all(r["kernel"].startswith("6.1.") for r in rows)
        assert {r["bpftrace_version"] for r in rows} == {f"bpftrace v{release}"}
        for r in rows[2:4] + rows[5:]:  # the guest's outputs, counted here by their own tracer
            assert r["events_counted"] == str(n), r
        for r in rows[1:4]:
            assert math.isfinite(float(r["overhead_ns_per_event"]))
        for r in rows[1:]:
            # the guest kernel's own clock, read in the guest: every send ran each kprobe program
            assert int(r["kernel_runs"]) >= n and float(r["kernel_ns_per_event"]) > 0, r
        with (out / f"{stem}.programs.csv").open() as fh:
            programs = list(csv.DictReader(fh))
        assert {(p["mode"], p["type"]) for p in programs if int(p["run_cnt"])} == {
            (m, "kprobe") for m in ("floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace",
                                    "both:libbpf")
        }
        md = (out / f"{stem}.md").read_text()
        assert "VM lane: guest kernel 6.1." in md
        # The rounds ran in this process's VM lane (its guest agent, booted once for both
        # releases and closed when the command returned), not a guest re-running the CLI.
        booted = re.search(
            r"guest kernel (6\.1\.\S+) under (tcg|kvm) \(booted in (\d+\.\d) s\)", md)
        assert booted, md
        assert booted[1] == rows[0]["kernel"] and float(booted[3]) > 0
    assert (out / "ktrace-vm6.1-bpftrace0.17.0.bench.png").read_bytes()[:4] == b"\x89PNG"
    # the table: a row per kernel x release x tracer, each read from its own bench's CSV
    with (out / "ktrace-table.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [(t["kernel_series"], t["bpftrace"], t["attach"], t["tracer"]) for t in table] == [
        (k, f"v{v}", a, m) for k, a in (("6.1", "kprobe"), ("host", "tracepoint"))
        for v in ("0.17.0", "0.27.0") for m in ("floor", "bpftrace", "libbpf")
    ]
    for t in table:
        assert not t["error"], t
        if t["kernel_series"] == "6.1":
            rows = guest[t["bpftrace"].removeprefix("v")]
            assert t["kernel"] == rows[0]["kernel"]
            assert t["csv"] == f"ktrace-vm6.1-bpftrace{t['bpftrace'].removeprefix('v')}.csv"
            assert t["accel"] in ("tcg", "kvm") and "in the guest" in t["pmu"]
            own = next(r for r in rows if r["mode"] == t["tracer"])  # one round: the median
            assert float(t["kernel_ns_per_event"]) == pytest.approx(
                float(own["kernel_ns_per_event"]), abs=0.06)
    assert (out / "ktrace-table.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.vm
def test_an_interrupted_guest_bench_keeps_the_runs_that_finished(vm_outdir: Path) -> None:
    from harness.lanes.vm import _rw_parent

    n, out = 100, vm_outdir / "bench"
    with (vm_outdir.parent / f"{vm_outdir.name}.stderr").open("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "bench", "ktrace", "--lane", "vm:6.1",
             "--rounds", "3", "--max-rounds", "3", "--warmup", "0", "--events", str(n),
             "--no-report", "-q", "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=err,
        )
        with reaped(proc):
            # Each bpftrace run in the guest asks this harness for its program: req/N.program,
            # which the guest reads and removes. Round 0 asks twice (alone, attached together);
            # the third is round 1's bpftrace alone, round 0 being over by then.
            asked, present = 0, False
            deadline = time.monotonic() + 1200
            while asked < 3:
                now = any(_rw_parent().glob(f"lane-6.1-{proc.pid}-*/req/*.program"))
                asked += now and not present
                present = now
                assert proc.poll() is None, "the bench ended before round 1's bpftrace"
                assert time.monotonic() < deadline, "round 1's bpftrace never started"
                time.sleep(0.005)
            time.sleep(2)  # its bpftrace attaching in the guest
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(300)
        err.seek(0)
        stderr = err.read()
    assert rc == 128 + signal.SIGINT, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1] == "harness bench: interrupted by Ctrl-C"
    with (out / "ktrace-vm6.1.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    first = [r for r in rows if r["round"] == "0"]
    assert [r["mode"] for r in first] == [
        "untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf",
    ]
    for r in first:
        if r["mode"] in ("bpftrace", "libbpf", "both:bpftrace", "both:libbpf"):
            assert r["events_counted"] == str(n), r  # every send, counted by its own tracer
        if r["mode"] != "untraced":
            assert int(r["kernel_runs"]) >= n, r  # the guest kernel's clock, read there
    later = [r for r in rows if r["round"] != "0"]
    assert {r["round"] for r in later} <= {"1"} and "bpftrace" not in {r["mode"] for r in later}
    md = (out / "ktrace-vm6.1.md").read_text()
    assert "**Interrupted**: interrupted by Ctrl-C after 1 full round(s)." in md
    assert not list(_rw_parent().glob(f"lane-6.1-{proc.pid}-*"))  # the guest's lane is gone

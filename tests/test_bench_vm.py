"""`harness bench ktrace --lane vm`: the same benchmark inside a Debian 6.1 guest, where the seed's
kprobe:udp_send_skb exists, through the Lane object: the guest runs the workload and the two
tracers; programs, the twin and the counting stay on the host. Counts only; no timing asserted."""

from __future__ import annotations

import csv
import math
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    # one table across kernels: the 6.1 guest's kprobe beside the host's tracepoint
    argv = [
        "bench",
        "ktrace",
        "--kernels",
        "6.1,host",
        "--rounds",
        "1",
        "--max-rounds",
        "1",
        "--warmup",
        "0",
        "--events",
        str(n),
        "--out",
        str(vm_outdir / "bench"),
    ]
    assert main(argv) == 0
    with (vm_outdir / "bench" / "ktrace-vm6.1.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["mode"] for r in rows] == [
        "untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf",
    ]
    assert {r["attach"] for r in rows} == {"kprobe"}
    assert all(r["kernel"].startswith("6.1.") for r in rows)
    for r in rows[2:4] + rows[5:]:  # the guest's outputs, counted here by their own tracer
        assert r["events_counted"] == str(n), r
    for r in rows[1:4]:
        assert math.isfinite(float(r["overhead_ns_per_event"]))
    for r in rows[1:]:
        # the guest kernel's own clock, read in the guest: every send ran each kprobe program
        assert int(r["kernel_runs"]) >= n and float(r["kernel_ns_per_event"]) > 0, r
    with (vm_outdir / "bench" / "ktrace-vm6.1.programs.csv").open() as fh:
        programs = list(csv.DictReader(fh))
    assert {(p["mode"], p["type"]) for p in programs if int(p["run_cnt"])} == {
        (m, "kprobe") for m in ("floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace",
                                "both:libbpf")
    }
    md = (vm_outdir / "bench" / "ktrace-vm6.1.md").read_text()
    assert "VM lane: guest kernel 6.1." in md
    # The rounds ran in this process's VM lane (its guest agent, booted once and closed when the
    # command returned), not a guest re-running the CLI: the page names that boot.
    booted = re.search(r"guest kernel (6\.1\.\S+) under (tcg|kvm) \(booted in (\d+\.\d) s\)", md)
    assert booted, md
    assert booted[1] == rows[0]["kernel"] and float(booted[3]) > 0
    assert (vm_outdir / "bench" / "ktrace-vm6.1.bench.png").read_bytes()[:4] == b"\x89PNG"
    # the table: each kernel's rows read from its own bench's CSV
    with (vm_outdir / "bench" / "ktrace-table.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [(t["kernel_series"], t["attach"], t["tracer"]) for t in table] == [
        (k, a, m) for k, a in (("6.1", "kprobe"), ("host", "tracepoint"))
        for m in ("floor", "bpftrace", "libbpf")
    ]
    assert table[0]["kernel"] == rows[0]["kernel"] and table[0]["csv"] == "ktrace-vm6.1.csv"
    assert table[0]["accel"] in ("tcg", "kvm") and "in the guest" in table[0]["pmu"]
    guest_bpftrace = float(rows[2]["kernel_ns_per_event"])  # one round: the median is it
    assert float(table[1]["kernel_ns_per_event"]) == pytest.approx(guest_bpftrace, abs=0.06)
    assert (vm_outdir / "bench" / "ktrace-table.png").read_bytes()[:4] == b"\x89PNG"

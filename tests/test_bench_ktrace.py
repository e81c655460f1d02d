"""`harness bench ktrace` pieces on the real kernel: the catalog's generated bpftrace program and
the libbpf CO-RE twin around loopback UDP sends; both must count every send."""

from __future__ import annotations

import math

from harness.compare import bench


def test_ktrace_bench_counts_every_send_on_both_tracers(needs_bpf: None) -> None:
    from harness.compare import bench_cases

    n = 300
    case = bench_cases.build("ktrace", n, ["bpftrace", "libbpf"])
    samples = bench.run_rounds(case.workload, case.tracers, bench.Rounds(1, 1, warmup=0))
    assert [s.mode for s in samples] == ["untraced", "bpftrace", "libbpf"]
    assert all(s.timed_by == "loop" for s in samples)  # udp_send.py times its own send loop
    for s in samples[1:]:
        assert s.events_counted == n, (s.mode, s.events_counted)
        assert s.overhead_ns_per_event is not None and math.isfinite(s.overhead_ns_per_event)
        assert s.attach_ms is not None and s.peak_rss_kib is not None

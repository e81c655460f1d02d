"""`harness bench ktrace` pieces on the real kernel: the catalog's generated bpftrace program and
the libbpf CO-RE twin around loopback UDP sends; both must count every send."""

from __future__ import annotations

import math

from harness.compare import bench
from harness.lanes.base import HOST


def test_ktrace_bench_counts_every_send_on_both_tracers(needs_bpf: None) -> None:
    from harness.api.planner import choose
    from harness.compare import bench_cases

    n = 300
    attach, reason = choose(bench_cases.equivalents("ktrace"), None, None, None)
    case = bench_cases.build("ktrace", n, ["bpftrace", "libbpf"], attach, reason=reason,
                             lane=HOST)
    samples = bench.run_rounds(case.workload, case.tracers, bench.Rounds(1, 1, warmup=0))
    # ... and with both attached in one run (both:*), each again counts every send
    assert [s.mode for s in samples] == [
        "untraced", "bpftrace", "libbpf", "both:bpftrace", "both:libbpf",
    ]
    assert all(s.timed_by == "loop" for s in samples)  # udp_send.py times its own send loop
    assert all(s.cpu_ns is not None and s.cpu_ns > 0 for s in samples)  # and its CPU time
    for s in samples[1:]:
        assert s.events_counted == n, (s.mode, s.events_counted)
    for s in samples[1:3]:
        assert s.overhead_ns_per_event is not None and math.isfinite(s.overhead_ns_per_event)
        assert s.attach_ms is not None and s.peak_rss_kib is not None

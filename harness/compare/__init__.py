"""Stage 4-5: bpftrace against its twin, and benchmarks."""

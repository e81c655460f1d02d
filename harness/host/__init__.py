"""The machine's edge: capabilities, kernel symbols, the bpftrace runner, workloads."""

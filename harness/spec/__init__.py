"""Stage 1: what to trace. Probe specs, the catalog, and codegen to bpftrace text."""

"""Stage 3: what bpftrace printed. The Output model, the parser, and pandas frames."""

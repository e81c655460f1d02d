"""ktrace-harness: probe spec -> bpftrace -> parsed frames, cross-checked by a libbpf CO-RE twin."""

__version__ = "0.1.0"

"""One module per CLI subcommand; each has `add_arguments(parser)` and `run(args) -> int`.

The CLI imports a subcommand's module only when it is chosen, so `harness run` does not pay for
pandas, plotting or the VM lane before bpftrace starts.
"""

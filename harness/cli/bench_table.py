"""`harness bench NAME --kernels 6.1,6.12,host --bpftrace 0.17,0.27`: the flags of a table of
benches, one per kernel x release (harness.bench_table runs them and writes the table).

Each cell is the ordinary bench (its CSV, .md and programs under their usual names: a guest's
`<NAME>-vm6.1-bpftrace0.17.0.csv`, the host's `<NAME>-bpftrace0.17.0.csv`), so every figure of the
table can be traced to its rounds. A cell that fails is a row with its error; the others still
run, and the exit status says so.
"""

from __future__ import annotations

import argparse

from harness.errors import UsageError
from harness.host.bpftrace_versions import resolve, split_names
from harness.lanes.debian import SUITES


def kernels(text: str | None) -> list[str]:
    """`--kernels 6.1,host` -> ['6.1', 'host']; None (not given) -> the host alone."""
    if text is None:
        return ["host"]
    names = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in names if k != "host" and k not in SUITES]
    if unknown or not names:
        raise UsageError(
            f"--kernels: unknown kernel {unknown[0]!r}" if unknown else "--kernels names no kernel",
            f"choose from {', '.join([*SUITES, 'host'])}, e.g. --kernels 6.1,6.12,host",
        )
    return list(dict.fromkeys(names))


def releases(text: str | None) -> list[str | None]:
    """`--bpftrace 0.17,0.27` -> each name resolved now (a root built here, before any guest
    boots); None (not given) -> the system's release."""
    if text is None:
        return [None]
    names = list(dict.fromkeys(split_names(text)))
    for name in names:
        resolve(name)
    return list(names)


def check(args: argparse.Namespace) -> None:
    """The table's own options, before anything runs."""
    if args.kernels is not None and args.lane != "host":
        raise UsageError(
            f"--kernels and --lane {args.lane} both say where to run",
            "drop --lane: --kernels 6.1,host runs each kernel (6.1 in the VM lane)",
        )
    kernels(args.kernels)

"""`harness matrix NAME --kernels 6.1,6.12,host [--bpftrace 0.17,0.27]`: one CO-RE object, one
crosscheck per kernel and bpftrace release (harness.api.matrix).

Each row says which attach type the kernel allowed, what each tracer saw, whether they agreed,
and the field offsets libbpf's CO-RE relocation picked on that kernel, beside the sha256 of the
one `.bpf.o` every row ran: the portability CO-RE promises, shown as a table. With several
bpftrace releases, each kernel's bpftrace frames are compared across releases (the same
workload must give the same counts, harness.compare.versions); a difference is written as a
diff CSV and fails the matrix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """examples:
  harness matrix ktrace --kernels 6.1,6.12,host   # one .bpf.o, one crosscheck per kernel
  harness matrix ktrace --bpftrace 0.17,0.27 --kernels 6.1,host   # and per bpftrace release
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="catalog entry with a libbpf twin (ktrace)")
    parser.add_argument(
        "--kernels", default="6.1,6.12,host", help="comma list of 6.1, 6.12 and host"
    )
    parser.add_argument("--count", type=int, default=60, help="datagrams per crosscheck")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per kernel")
    parser.add_argument("--out", type=Path, help="results directory (default results/<run-id>)")
    parser.add_argument(
        "--bpftrace",
        metavar="VERSIONS",
        help="comma list of bpftrace releases (e.g. 0.17,0.27): a row each, frames compared "
        "across them (default: the system's only)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.api import matrix
    from harness.host.bpftrace_versions import split_names

    m = matrix(
        args.name,
        kernels=[s.strip() for s in args.kernels.split(",") if s.strip()],
        count=args.count,
        timeout=args.timeout,
        out=args.out,
        bpftrace=list(split_names(args.bpftrace)) if args.bpftrace else (None,),
        on_kernel=lambda series: print(f"== {series}", flush=True),
    )
    for line in m.notes:
        print(line)
    for row in m.rows:
        if row["error"] and row["verdict"] == "error":
            print(f"harness matrix: {row['kernel_series']}: error: {row['error']}", file=sys.stderr)
    _print(m.rows)
    shas = {r["bpf_obj_sha256"] for r in m.rows if r["bpf_obj_sha256"]}
    print(f"one .bpf.o for all rows: {'yes' if len(shas) == 1 else 'NO'}; "
          f"table: {m.path}/matrix.csv")
    return 0 if m.passed else 1


def _print(rows: list[dict[str, object]]) -> None:
    from harness.api import MATRIX_COLUMNS

    shown = [c for c in MATRIX_COLUMNS if c not in ("kernel_series", "bpf_obj_sha256", "error")]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in shown}
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in shown))
    sys.stdout.flush()

"""`harness matrix NAME --kernels 6.1,6.12,host [--bpftrace 0.17,0.27]`: one CO-RE object per
attach type, one crosscheck per kernel and bpftrace release (harness.api.matrix).

Each row says which attach type the kernel allowed, what each tracer saw, whether they agreed,
and the field offsets libbpf's CO-RE relocation picked on that kernel, beside the sha256 of the
`.bpf.o` it ran. The twin is generated per attach type (the host, without kprobes, runs the
tracepoint one), and every row of one attach type must have run the very same object: the
portability CO-RE promises, shown as a table. With several
bpftrace releases, each kernel's bpftrace frames are compared across releases (the same
workload must give the same counts, harness.compare.versions); a difference is written as a
diff CSV and fails the matrix.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.api.matrix import MATRIX_COLUMNS, matrix
from harness.cli.options import add_bpftrace_argument, at_least, duration
from harness.cli.progress import terminal_progress
from harness.host.bpftrace_versions import split_names

EXAMPLES = """examples:
  harness matrix ktrace --kernels 6.1,6.12,host   # one .bpf.o per attach type
  harness matrix ktrace --bpftrace 0.17,0.27 --kernels 6.1,host   # and per bpftrace release
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="catalog entry with a libbpf twin (ktrace)")
    parser.add_argument(
        "--kernels", default="6.1,6.12,host", help="comma list of 6.1, 6.12 and host"
    )
    parser.add_argument("--count", type=at_least(1), default=60, help="datagrams per crosscheck")
    parser.add_argument("--timeout", type=duration, default=600.0, metavar="TIME",
                        help="how long each kernel may take (5s, 2m; default 600 s)")
    parser.add_argument("--out", type=Path, help="results directory (default results/<run-id>)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress display on the terminal (guest boots, crosschecks)")
    add_bpftrace_argument(
        parser, "comma list of bpftrace releases (e.g. 0.17,0.27): a row each, frames compared "
        "across them (default: the system's only)", "VERSIONS",
    )


def run(args: argparse.Namespace) -> int:
    with terminal_progress(args.quiet) as progress:  # each guest's boot, each crosscheck
        m = matrix(
            args.name,
            kernels=[s.strip() for s in args.kernels.split(",") if s.strip()],
            count=args.count,
            timeout=args.timeout,
            out=args.out,
            bpftrace=list(split_names(args.bpftrace)) if args.bpftrace else (None,),
            on_kernel=lambda series: print(f"== {series}", flush=True),
            progress=progress,
        )
    for line in m.notes:
        print(line)
    for row in m.rows:
        if row["error"] and row["verdict"] == "error":
            print(f"harness matrix: {row['kernel_series']}: error: {row['error']}", file=sys.stderr)
    _print(m.rows)
    objects = ", ".join(
        f"{attach} {' '.join(sorted(s[:12] for s in shas))} ({_kernels(m.rows, attach)})"
        for attach, shas in sorted(m.objects().items())
    )
    print(f"one .bpf.o per attach type: {'yes' if m.one_object_per_attach else 'NO'}"
          f"{': ' + objects if objects else ''}; table: {m.path}/matrix.csv")
    return 0 if m.passed else 1


def _kernels(rows: list[dict[str, object]], attach: str) -> str:
    return ", ".join(str(r["kernel_series"]) for r in rows if r["attach"] == attach)


def _print(rows: list[dict[str, object]]) -> None:
    shown = [c for c in MATRIX_COLUMNS if c not in ("kernel_series", "bpf_obj_sha256", "error")]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in shown}
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in shown))
    sys.stdout.flush()

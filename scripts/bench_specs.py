#!/usr/bin/env python3
"""Per-spec benchmarks of issue #11 in one invocation: bpftrace vs its generated libbpf twin.

    scripts/bench_specs.py                           # the four cases, the system's bpftrace
    scripts/bench_specs.py --bpftrace 0.17,0.27      # and per bpftrace release (issue #15)

Cases, each one `harness bench` run (untraced, bpftrace and the twin alternating per round):
  a  tracepoint:syscalls:sys_enter_getppid, bare count()            getppid() loop
  b  the same probe, count by kstack                                 getppid() loop
  c  tracepoint:net:net_dev_queue, hist(args.len)                    loopback UDP sends
  d  the ktrace catalog spec (kstack counts, skb->hash, hist of skb->len): kprobe:udp_send_skb
     where the kernel has kprobes; on this host (no kprobes) its tracepoint equivalent
     net:net_dev_queue, which the .md of the case names as its attach type
Each case writes results/bench/<stem>.csv/.md (stems spec-a-count, spec-b-kstack, spec-c-hist,
ktrace-spec-d; with --bpftrace a -bpftrace<VERSION> suffix each), its measured .bt and generated
.bpf.c once each under results/bench/sources/ (named by content; the CSV's `program` column).
Then results/bench/spec_summary.csv/.md: one row per case and release, medians of the per-event
overheads, their ratio, and the time to attached, with the load average beside, so one table
shows what the twin saves and what a bpftrace upgrade changes; last, `harness report` over the
directory (a PNG per CSV, summary.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# case -> (label, `harness bench` target and spec options, what it measures)
CASES: dict[str, tuple[str, list[str], str]] = {
    "a": ("spec-a-count", ["tracepoint:syscalls:sys_enter_getppid"], "bare count()"),
    "b": ("spec-b-kstack", ["tracepoint:syscalls:sys_enter_getppid", "--count-by", "kstack"],
          "count by kstack"),
    "c": ("spec-c-hist", ["tracepoint:net:net_dev_queue", "--hist", "args.len"],
          "hist of a field (args.len)"),
    "d": ("spec-d", ["ktrace"], "the ktrace spec"),
}
SUMMARY_COLUMNS = (
    "case", "what", "bench", "bpftrace", "attach", "rounds", "events",
    "bpftrace_overhead_ns", "libbpf_overhead_ns", "ratio", "kernel_ratio", "kernel_lo",
    "kernel_hi", "verdict", "bpftrace_attach_ms", "libbpf_attach_ms", "load_before",
    "load_after", "csv",
)


def stem(case: str, release: str | None) -> str:
    """The file stem `harness bench` gives this case (cli/bench.py: NAME-LABEL, -bpftraceV)."""
    label, target, _ = CASES[case]
    name = label if ":" in target[0] else f"{target[0]}-{label}"
    return name if release is None else f"{name}-bpftrace{release}"


def bench_argv(case: str, release: str | None, args: argparse.Namespace) -> list[str]:
    label, target, _ = CASES[case]
    syscalls = target[0].startswith("tracepoint:syscalls:")
    events = args.syscall_events if syscalls else args.udp_events
    most = args.max_rounds or 3 * args.rounds
    argv = [sys.executable, "-m", "harness.cli", "bench", *target, "--label", label,
            "--rounds", str(args.rounds), "--max-rounds", str(most), "--warmup", str(args.warmup),
            "--events", str(events), "--out", str(args.out), "--no-report", "--quiet"]
    return argv + (["--bpftrace", release] if release else [])


def medians(path: Path) -> dict[str, object]:
    """Median overhead and attach time per tracer from one bench CSV, and their ratio."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))

    def med(mode: str, column: str) -> float | None:
        values = [float(r[column]) for r in rows if r["mode"] == mode and r[column]]
        return statistics.median(values) if values else None

    b, lb = med("bpftrace", "overhead_ns_per_event"), med("libbpf", "overhead_ns_per_event")
    first = rows[0] if rows else {}
    sys.path.insert(0, str(REPO))
    from harness.compare import bench, stats

    head = stats.headline(bench.read_rows(path))  # in the kernel above the floor, same events
    return {
        "bench": first.get("bench", ""),
        "bpftrace": first.get("bpftrace_version", ""),
        "attach": first.get("attach", ""),
        "rounds": len({r["round"] for r in rows}),
        "events": first.get("events_expected", ""),
        "bpftrace_overhead_ns": b,
        "libbpf_overhead_ns": lb,
        "ratio": b / lb if b is not None and lb else None,
        "kernel_ratio": head.ratio.value if head else None,
        "kernel_lo": head.ratio.lo if head else None,
        "kernel_hi": head.ratio.hi if head else None,
        "verdict": head.verdict if head else "",
        "bpftrace_attach_ms": med("bpftrace", "attach_ms"),
        "libbpf_attach_ms": med("libbpf", "attach_ms"),
    }


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def write_summary(rows: list[dict[str, object]], out: Path) -> None:
    def fmt(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v if v is not None else "")

    with (out / "spec_summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: fmt(r.get(k)) for k in SUMMARY_COLUMNS} for r in rows)
    shown = ("case", "what", "bpftrace", "attach", "bpftrace_overhead_ns", "libbpf_overhead_ns",
             "ratio", "verdict", "bpftrace_attach_ms", "libbpf_attach_ms", "load_before", "csv")
    lines = [
        "# Per-spec benchmarks: bpftrace vs its generated libbpf twin",
        "",
        f"`scripts/bench_specs.py`, {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}, "
        f"{os.cpu_count()} CPUs. Overheads are medians over rounds of (traced - untraced) "
        "ns per event (the workload's CPU time); ratio = bpftrace / twin of those medians; "
        "verdict = the bench's headline, in the kernel above the floor on the same events, with "
        "its 95% CI. Case d runs its tracepoint equivalent on a kernel without kprobes (attach "
        "column).",
        "",
        "| " + " | ".join(shown) + " |",
        "|" + "---|" * len(shown),
        *["| " + " | ".join(fmt(r.get(k)) for k in shown) + " |" for r in rows],
        "",
    ]
    (out / "spec_summary.md").write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="a,b,c,d", help="which cases (default a,b,c,d)")
    ap.add_argument("--bpftrace", help="comma list of releases, e.g. 0.17,0.27 "
                    "(default: the system's, files without a release suffix)")
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds per case, at least")
    ap.add_argument("--max-rounds", type=int,
                    help="rounds at most per case (default 3x --rounds; `harness bench` adds "
                    "rounds until its headline ratio is known to +-2%%)")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first")
    ap.add_argument("--syscall-events", type=int, default=1_000_000,
                    help="getppid() calls per run (cases a, b)")
    ap.add_argument("--udp-events", type=int, default=50_000,
                    help="UDP sends per run (cases c, d)")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    ap.add_argument("--no-report", action="store_true",
                    help="skip `harness report` over --out at the end (PNGs, summary.md)")
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case {unknown[0]!r}: choose from {', '.join(CASES)}")
    releases: list[str | None] = (
        [r.strip() for r in args.bpftrace.split(",") if r.strip()] if args.bpftrace else [None]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    failed = 0
    for release in releases:
        for case in cases:
            argv = bench_argv(case, release, args)
            print(f"== {case} ({CASES[case][2]}), bpftrace {release or 'system'}: "
                  f"harness {' '.join(argv[3:])}", flush=True)
            before, started = _load(), time.monotonic()
            done = subprocess.run(argv, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
            row: dict[str, object] = {"case": case, "what": CASES[case][2],
                                      "load_before": before, "load_after": _load()}
            if done.returncode != 0:
                failed += 1
                print(f"   failed (exit {done.returncode}); see its stderr above", flush=True)
                rows.append({**row, "bpftrace": release or "system", "csv": "failed"})
                continue
            made = args.out / f"{stem(case, _short(release))}.csv"
            rows.append({**row, **medians(made), "csv": made.name})
            print(f"   {made} ({time.monotonic() - started:.0f} s)", flush=True)
    write_summary(rows, args.out)
    print(args.out / "spec_summary.md")
    print((args.out / "spec_summary.md").read_text())
    if not args.no_report:  # once for all cases: a PNG per CSV, results/bench/summary.md
        from harness.report.summary import write_report

        for path in write_report(args.out):
            print(path)
    return 1 if failed else 0


def _short(release: str | None) -> str | None:
    """'0.27' -> '0.27.0', the version `harness bench` puts into its file names."""
    if release is None:
        return None
    from harness.host.bpftrace_versions import resolve

    return resolve(release).short_version


if __name__ == "__main__":
    sys.exit(main())

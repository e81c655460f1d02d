#!/usr/bin/env python3
"""Does a benchmark repeat? The same `harness bench` invoked N times (default 3), one after another.

    flock /work/team/bench.lock scripts/bench_repeat.py          # the issue-20 bench, 3 times
    scripts/bench_repeat.py --runs 3 -- syscalls --events 200000 # any bench arguments after --

Each invocation is a fresh process (its own BPF programs, JIT images, maps, warm-up), so what
differs between them is what a reader re-running the bench would see. From each invocation's CSV
the verdicts are made again (compare.stats, as `harness bench` makes them): bpftrace/twin in the
kernel and end to end, each a ratio of medians with its 95% bootstrap interval. The invocations
agree when every in-kernel ratio lies within +-TOLERANCE (default 5%) of their median.

Writes results/bench/repeat.csv (columns in results/README.md) and repeat.md: a row per
invocation with the machine's load average before and after it, and one `agreement` row.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.compare import bench, stats  # noqa: E402

# issue 20's example: a map by comm and a histogram on every getppid() of the workload
DEFAULT_BENCH = [
    "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm", "--hist", "args.__syscall_nr",
    "--workload-pid", "--rounds", "5", "--events", "200000",
]
COLUMNS = (
    "kind", "invocation", "started_utc", "seconds", "load_before", "load_after", "rounds",
    "kernel_ratio", "kernel_lo", "kernel_hi", "total_ratio", "total_lo", "total_hi",
    "own_ratio", "own_lo", "own_hi",
    "e2e_ratio", "e2e_lo", "e2e_hi",
    "floor_kernel_ns", "bpftrace_kernel_ns", "libbpf_kernel_ns", "deviation", "total_dev",
    "own_dev",
    "agree",
    "bench_args", "git_rev",
)
# column prefix -> the comparison (metric, a, b) it reports
WHICH = {
    "kernel": ("program_ns_per_event", "both:bpftrace", "both:libbpf"),
    "total": ("kernel_ns_per_event", "both:bpftrace", "both:libbpf"),
    "own": ("kernel_ns_per_event", "bpftrace", "libbpf"),
    "e2e": ("overhead_ns_per_event", "bpftrace", "libbpf"),
}


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _median_of(rows: list[bench.Row], mode: str) -> float | None:
    values = [r.kernel_ns_per_event for r in rows if r.mode == mode and r.kernel_ns_per_event]
    return statistics.median(values) if values else None


def figures(path: Path) -> dict[str, object]:
    """One invocation's verdicts, made again from its CSV."""
    rows = bench.read_rows(path)
    out: dict[str, object] = {"rounds": len({r.round for r in rows})}
    for key, (metric, a, b) in WHICH.items():
        found = stats.compare(rows, metric, a, b)
        if found is not None:
            r = found.ratio
            out |= {f"{key}_ratio": r.value, f"{key}_lo": r.lo, f"{key}_hi": r.hi}
    for mode in ("floor", "bpftrace", "libbpf"):
        out[f"{mode}_kernel_ns"] = _median_of(rows, mode)
    return out


def invoke(n: int, bench_args: list[str], keep: Path | None) -> dict[str, object]:
    """`harness bench` once, in a directory of its own; its figures and the load around it."""
    out = (keep / f"invocation-{n}") if keep else Path(tempfile.mkdtemp(prefix="bench-repeat-"))
    argv = [sys.executable, "-m", "harness.cli", "bench", *bench_args, "--out", str(out),
            "--no-report", "--quiet"]
    before, started, t0 = _load(), datetime.now(UTC), time.monotonic()
    done = subprocess.run(argv, cwd=REPO, check=False, stdout=subprocess.DEVNULL)
    row: dict[str, object] = {
        "kind": "invocation", "invocation": n, "started_utc": f"{started:%Y-%m-%dT%H:%M:%SZ}",
        "seconds": time.monotonic() - t0, "load_before": before, "load_after": _load(),
        "bench_args": " ".join(bench_args), "git_rev": bench.environment()["git_rev"],
    }
    made = [p for p in out.glob("*.csv") if not p.name.endswith(".programs.csv")]
    if done.returncode != 0 or len(made) != 1:
        raise SystemExit(f"invocation {n} failed (exit {done.returncode}); its stderr is above")
    return row | figures(made[0])


def _spread(rows: list[dict[str, object]], key: str) -> tuple[float, float] | None:
    """(median, largest deviation from it) of the invocations' `key` ratios; each row gets its
    own deviation in `<key>_dev`. None unless every invocation has the ratio."""
    ratios = [r.get(f"{key}_ratio") for r in rows]
    if any(v is None for v in ratios):
        return None
    values = [float(v) for v in ratios]  # type: ignore[arg-type]
    mid = statistics.median(values)
    for r, v in zip(rows, values, strict=True):
        r[f"{key}_dev"] = v / mid - 1
    return mid, max(abs(v / mid - 1) for v in values)


def agreement(rows: list[dict[str, object]], tolerance: float) -> dict[str, object]:
    """Whether every invocation's headline in-kernel ratio (above the floor, on the same
    events) is within +-tolerance of their median; the `agreement` row holds the median of
    each ratio over the invocations, and the largest deviation of the headline."""
    total: dict[str, object] = {
        "kind": "agreement", "invocation": len(rows),
        "load_before": rows[0]["load_before"], "load_after": rows[-1]["load_after"],
        "bench_args": rows[0]["bench_args"], "git_rev": rows[0]["git_rev"],
    }
    for key in WHICH:
        found = _spread(rows, key)
        if found is not None:
            values = [float(r[f"{key}_ratio"]) for r in rows]  # type: ignore[arg-type]
            total |= {f"{key}_ratio": found[0], f"{key}_lo": min(values),
                      f"{key}_hi": max(values)}
    headline = _spread(rows, "kernel")
    if headline is None:
        return total | {"agree": "no in-kernel ratio in every invocation"}
    for r in rows:
        r["deviation"] = r["kernel_dev"]
        r["agree"] = abs(float(r["kernel_dev"])) <= tolerance  # type: ignore[arg-type]
    return total | {"deviation": headline[1], "agree": headline[1] <= tolerance}


def _cell(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def _ci(row: dict[str, object], key: str) -> str:
    if row.get(f"{key}_ratio") is None:
        return "-"
    return (f"{float(row[f'{key}_ratio']):.2f}x ({float(row[f'{key}_lo']):.2f}x-"  # type: ignore[arg-type]
            f"{float(row[f'{key}_hi']):.2f}x)")  # type: ignore[arg-type]


def _dev(row: dict[str, object], key: str) -> str:
    value = row.get(f"{key}_dev")
    return "-" if value is None else f"{float(value) * 100:+.1f}%"  # type: ignore[arg-type]


def markdown(rows: list[dict[str, object]], total: dict[str, object], tolerance: float) -> str:
    lines = [
        "# Repeatability: the same bench, invoked one after another",
        "",
        f"`harness bench {rows[0]['bench_args']}`, {len(rows)} invocations, "
        f"{os.cpu_count()} CPUs shared with other work (load average 1/5/15 min before and "
        "after each). Ratios are bpftrace / the twin, medians over rounds with their 95% "
        "bootstrap interval; deviation = from the median of the invocations. Above the floor: "
        "floor, bpftrace and the twin attached in one run per round, each tracer's in-kernel "
        "ns per event above the floor's on the same events (the headline); total: the same "
        "run, floor included; own runs: each tracer in runs of its own; end to end: the "
        "workload's CPU time over the untraced run's.",
        "",
        "| # | started | load before | load after | rounds | above the floor | deviation "
        "| total, same events | deviation | own runs | deviation | end to end "
        "| floor / bpftrace / twin ns per event (own runs) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kernel = " / ".join(
            f"{float(r[k]):.1f}" if r.get(k) is not None else "-"  # type: ignore[arg-type]
            for k in ("floor_kernel_ns", "bpftrace_kernel_ns", "libbpf_kernel_ns")
        )
        lines.append(
            f"| {r['invocation']} | {r['started_utc']} | {r['load_before']} | {r['load_after']} "
            f"| {r['rounds']} | {_ci(r, 'kernel')} | {_dev(r, 'kernel')} | {_ci(r, 'total')} "
            f"| {_dev(r, 'total')} | {_ci(r, 'own')} | {_dev(r, 'own')} | {_ci(r, 'e2e')} "
            f"| {kernel} |"
        )
    if "deviation" in total:
        verdict = "agree" if total["agree"] else "do NOT agree"
        lines += [
            "",
            f"The in-kernel ratios above the floor {verdict} within +-{tolerance * 100:.0f}%: "
            f"the largest deviation from their median ({float(total['kernel_ratio']):.3f}x) is "  # type: ignore[arg-type]
            f"{float(total['deviation']) * 100:.1f}%.",  # type: ignore[arg-type]
        ]
    else:
        lines += ["", f"No agreement to judge: {total['agree']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="invocations (default 3)")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="how far from their median each in-kernel ratio may be (default 0.05)")
    ap.add_argument("--csv", type=Path, default=REPO / "results" / "bench" / "repeat.csv")
    ap.add_argument("--keep", type=Path, help="keep each invocation's files under this directory")
    ap.add_argument("bench", nargs="*", help="`harness bench` arguments (after --); default: "
                    + " ".join(DEFAULT_BENCH))
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2: one invocation cannot disagree with itself")
    bench_args = args.bench or DEFAULT_BENCH
    rows = []
    for n in range(1, args.runs + 1):
        print(f"== invocation {n}/{args.runs}: harness bench {' '.join(bench_args)}", flush=True)
        rows.append(invoke(n, bench_args, args.keep))
        print(f"   in the kernel {_ci(rows[-1], 'kernel')} (own runs {_ci(rows[-1], 'own')}), "
              f"end to end {_ci(rows[-1], 'e2e')}, "
              f"load {rows[-1]['load_before']} -> {rows[-1]['load_after']}", flush=True)
    total = agreement(rows, args.tolerance)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(r.get(k)) for k in COLUMNS} for r in [*rows, total])
    md = args.csv.with_suffix(".md")
    md.write_text(markdown(rows, total, args.tolerance))
    print(args.csv)
    print(md.read_text())
    return 0 if total.get("agree") is True else 1


if __name__ == "__main__":
    sys.exit(main())

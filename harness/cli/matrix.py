"""`harness matrix NAME --kernels 6.1,6.12,host [--bpftrace 0.17,0.27]`: one CO-RE object, one
crosscheck per kernel and bpftrace release.

Each row says which attach type the kernel allowed, what each tracer saw, whether they agreed,
and the field offsets libbpf's CO-RE relocation picked on that kernel, beside the sha256 of the
one `.bpf.o` every row ran: the portability CO-RE promises, shown as a table. With several
bpftrace releases, each kernel's bpftrace frames are compared across releases (the same
workload must give the same counts, harness.compare.versions); a difference is written as a
diff CSV and fails the matrix.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from harness.errors import UsageError

COLUMNS = (
    "kernel_series",
    "kernel",
    "bpftrace",
    "lane",
    "accel",
    "attach",
    "bpftrace_events",
    "libbpf_events",
    "verdict",
    "versions_agree",
    "core_relocations",
    "bpf_obj_sha256",
    "error",
)


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


def _row(series: str, out: Path, error: str) -> dict[str, object]:
    """One table row from a crosscheck's verdict.json (and vm.json in the VM lane)."""
    verdict_file, vm_file = out / "verdict.json", out / "vm.json"
    verdict = json.loads(verdict_file.read_text()) if verdict_file.exists() else {}
    vm = json.loads(vm_file.read_text()) if vm_file.exists() else {}
    totals = {m["map"]: m for m in verdict.get("maps", [])}
    bt_events = lb_events = None
    stacks = out / "bpftrace" / "stacks.csv", out / "libbpf" / "stacks.csv"
    if all(p.exists() for p in stacks):
        import pandas as pd

        bt_events, lb_events = (int(pd.read_csv(p)["value"].sum()) for p in stacks)
    status = ("pass" if verdict.get("passed") else "FAIL") if verdict else "error"
    run_json = out / "bpftrace" / "run.json"
    bpftrace = json.loads(run_json.read_text()).get("bpftrace", "") if run_json.exists() else ""
    return {
        "kernel_series": series,
        "kernel": verdict.get("kernel") or vm.get("release", ""),
        "bpftrace": bpftrace,
        "lane": "host" if series == "host" else "vm",
        "accel": vm.get("accel", "-"),
        "attach": verdict.get("attach", ""),
        "bpftrace_events": bt_events,
        "libbpf_events": lb_events,
        "verdict": status if not error else "error",
        "versions_agree": "-",
        "core_relocations": " ".join(
            f"{k}@{v}" for k, v in sorted(verdict.get("core_relocations", {}).items())
        ),
        "bpf_obj_sha256": verdict.get("bpf_obj_sha256", ""),
        "error": error or ("; ".join(k for k, m in totals.items() if not m["equal"])),
    }


def run(args: argparse.Namespace) -> int:
    from harness.cli import main as harness_main
    from harness.host.bpftrace_versions import resolve, split_names
    from harness.lanes.debian import SUITES
    from harness.report.rundir import new_run_dir

    series_list = [s.strip() for s in args.kernels.split(",") if s.strip()]
    unknown = [s for s in series_list if s != "host" and s not in SUITES]
    if unknown or not series_list:
        raise UsageError(
            f"unknown kernels: {', '.join(unknown) or '(none given)'}",
            f"choose from: {', '.join([*SUITES, 'host'])}",
        )
    versions: list[str | None] = list(split_names(args.bpftrace)) if args.bpftrace else [None]
    # Unknown names fail before any guest boots, and roots are built here; the system's own
    # release runs as the default (no --bpftrace), the same binary in a guest.
    passed = {name: (None if resolve(name).name == "system" else name) for name in versions}
    out = args.out or new_run_dir(f"matrix-{args.name}")
    rows = []
    for series in series_list:
        subs = []
        for version in versions:
            sub = (out / series / f"bpftrace-{version}" if version else out / series).resolve()
            argv = ["crosscheck", args.name, "--count", str(args.count), "--out", str(sub)]
            if passed.get(version):
                argv += ["--bpftrace", version]  # type: ignore[list-item]
            if series != "host":
                argv += ["--lane", f"vm:{series}", "--timeout", str(args.timeout)]
            print(f"== {series}: harness {' '.join(argv)}", flush=True)
            rc = harness_main(argv)  # prints its own one-line error; a failed run keeps its row
            rows.append(_row(series, sub, "" if rc in (0, 1) else f"crosscheck exited {rc}"))
            subs.append((version or "system", sub, rows[-1]))
        _compare_versions(subs)
    with (out / "matrix.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    _print(rows)
    shas = {r["bpf_obj_sha256"] for r in rows if r["bpf_obj_sha256"]}
    print(f"one .bpf.o for all rows: {'yes' if len(shas) == 1 else 'NO'}; table: {out}/matrix.csv")
    agree = all(r["versions_agree"] in ("-", "yes") for r in rows)
    return 0 if all(r["verdict"] == "pass" for r in rows) and len(shas) == 1 and agree else 1


def _frames(run_dir: Path) -> dict[str, object]:
    """The map CSVs of one crosscheck's bpftrace side, by map name."""
    import pandas as pd

    return {f"@{p.stem}": pd.read_csv(p) for p in sorted((run_dir / "bpftrace").glob("*.csv"))}


def _compare_versions(subs: list[tuple[str, Path, dict[str, object]]]) -> None:
    """Each release's bpftrace frames against the first release's, on one kernel; the verdict
    goes into the rows, each differing map into <kernel>/versions-<A>-vs-<B>/<map>.csv."""
    from harness.compare.versions import compare_frames

    if len(subs) < 2:
        return
    base_label, base_dir, _ = subs[0]
    base = _frames(base_dir)
    for label, sub, row in subs[1:]:
        if not base or row["verdict"] == "error":
            row["versions_agree"] = "not compared (a run failed)"
            continue
        diffs = compare_frames(base, _frames(sub), (base_label, label))  # type: ignore[arg-type]
        bad = [d for d in diffs if not d.equal]
        row["versions_agree"] = "yes" if not bad else "NO: " + ", ".join(d.map_name for d in bad)
        where = sub.parent / f"versions-{base_label}-vs-{label}"
        for d in diffs:
            print(f"   {base_label} vs {label} {d.map_name}: "
                  f"{'equal' if d.equal else 'DIFFER'} ({d.how})")
        for d in bad:
            where.mkdir(parents=True, exist_ok=True)
            d.diff.to_csv(where / f"{d.map_name.lstrip('@') or 'map'}.csv", index=False)
            print(d.diff.head(20).to_string(index=False))


def _print(rows: list[dict[str, object]]) -> None:
    shown = [c for c in COLUMNS if c not in ("kernel_series", "bpf_obj_sha256", "error")]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in shown}
    print("  ".join(c.ljust(widths[c]) for c in shown))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in shown))
    sys.stdout.flush()

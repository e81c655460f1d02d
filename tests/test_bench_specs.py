"""scripts/bench_specs.py and scripts/bench_run.py per bpftrace release, run for real but tiny.

No timing is asserted: every case must count exactly the workload's own number of events on
both tracers, its files must carry the release in their names (so releases never overwrite each
other), and the summary must have a row per case and release.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from bench_files import programs_measured

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.kernel
def test_spec_benches_per_release_in_one_invocation(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_specs.py"), "--cases", "a,d",
         "--bpftrace", "0.27", "--rounds", "1", "--max-rounds", "1", "--warmup", "0",
         "--syscall-events", "500", "--udp-events", "60", "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = list(csv.DictReader((tmp_path / "spec_summary.csv").open()))
    assert [(r["case"], r["bpftrace"], r["attach"]) for r in summary] == [
        ("a", "bpftrace v0.27.0", "tracepoint"), ("d", "bpftrace v0.27.0", "tracepoint"),
    ]
    for stem, events in (("spec-a-count-bpftrace0.27.0", "500"),
                         ("ktrace-spec-d-bpftrace0.27.0", "60")):
        rows = list(csv.DictReader((tmp_path / f"{stem}.csv").open()))
        traced = {r["mode"]: r["events_counted"] for r in rows if r["mode"] != "untraced"}
        assert traced == {"floor": "", "bpftrace": events, "libbpf": events, "both:floor": "",
                          "both:bpftrace": events, "both:libbpf": events}, stem
        measured = programs_measured(tmp_path, rows)
        assert "SEC(" in measured["libbpf"] and "count()" in measured["bpftrace"]
    assert "spec-a-count-bpftrace0.27.0" in (tmp_path / "summary.md").read_text()  # the report


@pytest.mark.kernel
def test_run_overhead_per_release_has_a_file_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "run_overhead.csv"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_run.py"), "--bpftrace", "0.27",
         "--pairs", "1", "--long", "0", "--phase-runs", "1", "--csv", str(out)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert {r["tool"] for r in rows if r["kind"] == "run"} == {"bpftrace", "harness"}
    (ratio,) = [r for r in rows if r["kind"] == "ratio"]
    assert "bpftrace0.27.0" in ratio["note"] and float(ratio["ratio"]) > 0

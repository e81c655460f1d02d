"""bpftrace 0.27 meets the real kprobe: the forky root, run inside the 6.1 guest (which sees the
host's files, the cached root included), counts every send exactly like 0.17."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm


def test_matrix_017_and_027_on_the_61_kprobe_and_the_host(tmp_path: Path) -> None:
    from harness.cli import main

    rc = main(["matrix", "ktrace", "--kernels", "6.1,host", "--bpftrace", "0.17,0.27",
               "--count", "30", "--timeout", "900", "--out", str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "matrix.csv").open()))
    assert [(r["kernel_series"], r["bpftrace"]) for r in rows] == [
        ("6.1", "bpftrace v0.17.0"), ("6.1", "bpftrace v0.27.0"),
        ("host", "bpftrace v0.17.0"), ("host", "bpftrace v0.27.0"),
    ], rows
    assert [r["attach"] for r in rows[:2]] == ["kprobe", "kprobe"]
    assert all(r["bpftrace_events"] == r["libbpf_events"] == "30" for r in rows), rows
    assert [r["versions_agree"] for r in rows] == ["-", "yes", "-", "yes"]
    assert rc == 0

"""`harness run` and `harness crosscheck` end to end on this kernel, through the real CLI."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main

pytestmark = pytest.mark.usefixtures("needs_bpf")
REPO = Path(__file__).resolve().parent.parent


def test_run_ktrace_counts_exact_sends_and_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 30
    assert main(["run", "ktrace", "--count", str(n), "--sizes", "100", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "udp_send_skb+" in out
    assert re.search(rf"^__dev_queue_xmit\+\d+\s+{n}$", out, re.M)  # the leaf row holds the count
    stacks = pd.read_csv(tmp_path / "stacks.csv")
    assert stacks["value"].sum() == n
    assert any("udp_send_skb+" in s for s in stacks["kstack"])
    hist = pd.read_csv(tmp_path / "len.csv")
    assert hist[hist["count"] > 0][["lo", "hi", "count"]].values.tolist() == [[128, 256, n]]
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["attach"] in ("kprobe", "kfunc", "tracepoint") and meta["attach_reason"]
    assert meta["workload_status"] == 0
    assert "@stacks[kstack] = count();" in meta["program"]
    # the default artefacts, small: no PNG (harness report draws it), a flame graph of KBs
    names = {p.name for p in tmp_path.iterdir()}
    assert {"stacks.csv", "run.json", "stacks.folded", "stacks.flame.html", "summary.md"} <= names
    assert not any(name.endswith(".png") for name in names)
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) < 300_000


def test_run_a_probe_line_with_a_workload(tmp_path: Path) -> None:
    workload = f"{sys.executable} {REPO}/harness/workloads/syscall_loop.py --count 2500"
    argv = [
        "run",
        "tracepoint:syscalls:sys_enter_getppid",
        "--count-by",
        "comm",
        "--workload-pid",
        "--workload",
        workload,
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    counts = pd.read_csv(tmp_path / "count.csv")
    assert counts["value"].sum() == 2500


def test_unknown_name_is_one_line_and_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "no_such_entry"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("harness run: error: no catalog entry named 'no_such_entry'")
    assert "\n" not in err


def test_kprobe_without_kprobes_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.host.capabilities import capabilities

    if capabilities().kprobes:
        pytest.skip("this kernel has kprobes")
    argv = ["run", "ktrace", "--attach", "kprobe", "--count", "3", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "kprobes are not built into this kernel" in err and "\n" not in err


def test_crosscheck_ktrace_passes_exactly(tmp_path: Path) -> None:
    assert main(["crosscheck", "ktrace", "--count", "120", "--out", str(tmp_path)]) == 0
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["passed"] and all(m["equal"] for m in verdict["maps"])
    bt = pd.read_csv(tmp_path / "bpftrace" / "stacks.csv")
    lb = pd.read_csv(tmp_path / "libbpf" / "stacks.csv")
    assert bt["value"].sum() == lb["value"].sum() == 120


def test_crosscheck_catches_a_twin_watching_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "crosscheck",
        "ktrace",
        "--count",
        "20",
        "--libbpf-pid-offset",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "DIFFER" in out and "FAIL" in out
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert not verdict["passed"]
    assert {m["map"] for m in verdict["maps"] if not m["equal"]} == {"@stacks", "@hash", "@len"}

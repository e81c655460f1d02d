"""harness.report.summary over run directories laid out as harness.report.rundir writes them.

The maps below are the values of a real bpftrace 0.17 run on this host
(tracepoint:net:net_dev_queue around 50 loopback UDP sends), written in the CSV contract:
stacks ';'-joined root first, hist buckets as lo/hi/count.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.report import flamegraph, plots
from harness.report.summary import ReportError, write_report

# Leaf first, as bpftrace prints kstack.
STACK_A = [
    "__dev_queue_xmit+1158",
    "ip_finish_output2+705",
    "ip_output+95",
    "ip_send_skb+145",
    "udp_send_skb+423",
    "udp_sendmsg+2534",
    "__sys_sendto+450",
    "__x64_sys_sendto+32",
    "do_syscall_64+113",
    "entry_SYSCALL_64_after_hwframe+118",
]
STACK_B = ["__dev_queue_xmit+1158", "neigh_resolve_output+300", *STACK_A[2:]]
LEN_HIST = {
    "lo": [32, 64, 128, 256, 512],
    "hi": [64, 128, 256, 512, 1024],
    "count": [2, 3, 6, 13, 26],
}


def root_first(stack: list[str]) -> str:
    return ";".join(reversed(stack))


def kernel_root_first(stack: list[str]) -> str:
    """A kernel stack as its .folded line has it: root first, frames marked `_[k]`."""
    return ";".join(f + "_[k]" for f in reversed(stack))


def make_run_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"kstack": [root_first(STACK_A), root_first(STACK_B)], "value": [50, 7]}).to_csv(
        path / "stacks.csv", index=False
    )
    pd.DataFrame(LEN_HIST).to_csv(path / "len.csv", index=False)
    pd.DataFrame({"key0": [0], "value": [57]}).to_csv(path / "hash.csv", index=False)
    (path / "run.json").write_text(
        json.dumps(
            {
                "command": "harness run ktrace",
                "attach": "tracepoint",
                "attach_reason": "kprobes are not built into this kernel",
                "program": "tracepoint:net:net_dev_queue { @stacks[kstack] = count(); }",
            }
        )
    )
    return path


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 200, (width, height)
    assert len(data) > 5000, "a plot with bars and labels is more than a blank image"


def test_report_writes_folded_flame_hist_and_summary(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run")
    written = write_report(run_dir)
    names = {p.name for p in written}
    assert names == {"stacks.folded", "stacks.flame.html", "len.hist.png", "summary.md"}
    assert all(p.exists() for p in written)

    folded = (run_dir / "stacks.folded").read_text().splitlines()
    assert folded == [f"{kernel_root_first(STACK_A)} 50", f"{kernel_root_first(STACK_B)} 7"]

    html = (run_dir / "stacks.flame.html").read_text()
    for frame in (
        "udp_send_skb+423",
        "neigh_resolve_output+300",
        "entry_SYSCALL_64_after_hwframe+118",
    ):
        assert frame in html
    assert "@stacks · tracepoint:net:net_dev_queue · 57 samples" in html  # map, probe, total
    assert len(html) < 150_000

    assert_png(run_dir / "len.hist.png")

    summary = (run_dir / "summary.md").read_text()
    assert "tracepoint" in summary and "kprobes are not built into this kernel" in summary
    for name in ("stacks.folded", "stacks.flame.html", "len.hist.png", "hash.csv"):
        assert f"({name})" in summary
    assert "| [len.csv](len.csv) | hist | 5 | 50 |" in summary


def test_folded_round_trip_and_prefix_keys() -> None:
    frame = pd.DataFrame(
        {
            "comm": ["python3", "python3", "ping"],
            "kstack": [root_first(STACK_A), root_first(STACK_A), root_first(STACK_B)],
            "value": [3, 4, 5],
        }
    )
    col = flamegraph.stack_column(frame)
    assert col == "kstack"
    counts = flamegraph.folded_counts(frame, col)
    # duplicate stacks add up; extra keys become the root-most frame; kernel frames `_[k]`
    assert counts[("python3", *kernel_root_first(STACK_A).split(";"))] == 7
    assert counts[("ping", *kernel_root_first(STACK_B).split(";"))] == 5
    assert flamegraph.parse_folded(flamegraph.folded_lines(counts)) == counts


def test_stack_column_found_by_content_and_not_in_plain_maps() -> None:
    by_content = pd.DataFrame({"key0": [root_first(STACK_A)], "value": [1]})
    assert flamegraph.stack_column(by_content) == "key0"
    comm_map = pd.DataFrame({"key0": ["sshd", "python3"], "value": [1, 2]})
    assert flamegraph.stack_column(comm_map) is None


def test_hist_labels_match_bpftrace() -> None:
    assert plots.bucket_label(4096, 8192) == "[4K, 8K)"
    assert plots.bucket_label(1, 2) == "[1]"
    assert plots.bucket_label(float("nan"), 0) == "(..., 0)"
    assert plots.bucket_label(100, None) == "[100, ...)"


def test_keyed_hist_with_open_ends_plots(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "comm": ["a", "a", "a", "b"],
            "lo": [None, 0, 1, 2],
            "hi": [0, 1, 2, 4],
            "count": [1, 2, 3, 4],
        }
    )
    frame["lo"] = frame["lo"].astype("Int64")
    run_dir = tmp_path / "keyed"
    run_dir.mkdir()
    frame.to_csv(run_dir / "lat.csv", index=False)
    written = write_report(run_dir)
    assert run_dir / "lat.hist.png" in written
    assert_png(run_dir / "lat.hist.png")


def test_bench_csv_gets_comparison_png(tmp_path: Path) -> None:
    rows = []
    for rnd in range(3):
        for mode, ns, attach, rss in (
            ("untraced", 500, None, None),
            ("bpftrace", 900, 400.0, 90000),
            ("libbpf", 700, 20.0, 4000),
        ):
            rows.append(
                {
                    "round": rnd,
                    "mode": mode,
                    "ns_per_event": ns + rnd,
                    "overhead_ns_per_event": None if mode == "untraced" else ns - 500,
                    "attach_ms": attach,
                    "peak_rss_kib": rss,
                }
            )
    run_dir = tmp_path / "bench"
    run_dir.mkdir()
    pd.DataFrame(rows).to_csv(run_dir / "demo.csv", index=False)
    written = write_report(run_dir)
    assert run_dir / "demo.bench.png" in written
    assert_png(run_dir / "demo.bench.png")
    summary = (run_dir / "summary.md").read_text()
    # the headline verdict with its interval (identical rounds: a point interval), not a bare ratio
    assert "bpftrace costs 2.00x (2.00x-2.00x, 95% CI, 3 rounds) of the twin end to end" in summary


def test_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no results directory"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no CSV files"):
        write_report(tmp_path / "empty")


def test_cli_report_prints_paths_and_fails_cleanly(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "cli")
    ok = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert str(run_dir / "summary.md") in ok.stdout.splitlines()
    bad = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_report_of_the_bench_folder_never_rewrites_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """results/bench is committed, not a run: `harness report` refuses it in one line, and with
    --out writes the report there, linking the CSVs where they are."""
    import shutil

    from harness.cli import main

    bench = tmp_path / "bench"
    shutil.copytree(Path(__file__).resolve().parent.parent / "results" / "bench", bench)
    before = _tree_bytes(bench)
    assert main(["report", str(bench)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a run directory" in err and "--out" in err
    assert main(["report", str(bench), "--out", str(bench)]) == 2
    out = tmp_path / "elsewhere"
    assert main(["report", str(bench), "--out", str(out)]) == 0
    assert _tree_bytes(bench) == before
    summary = (out / "summary.md").read_text()
    links = [line.split("](")[1].split(")")[0] for line in summary.splitlines()
             if line.startswith("| [") and ".csv]" in line]
    assert links and all((out / link).resolve().parent == bench.resolve() for link in links)
    assert all((out / link).is_file() for link in links)

"""`harness bench` stopped by Ctrl-C or SIGTERM mid-run keeps every run that finished: the
CSV and page of the rounds so far (the page says it was interrupted), a table whose cells
cut short or not run are rows saying so, and the usual interrupted status (128 + N).

The real bench runs and is signalled once round 0 is over (its runs' lines are on stderr, printed
as the round ended, before any file is written): the CSV kept must hold those very runs, each
with the workload's own event count on the tracers that count."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from processes import reaped

pytestmark = [pytest.mark.usefixtures("needs_bpf"), pytest.mark.kernel]

REPO = Path(__file__).resolve().parent.parent
N = 100_000
ROUND = ("untraced", "floor", "bpftrace", "libbpf", "both:floor", "both:bpftrace", "both:libbpf")
# the progress line of one finished run: `  round 0 bpftrace   1234.5 ns/event ...`
LINE = re.compile(r"^  round (\d+) (\S+)\s+([\d.]+) ns/event")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _interrupt_after_round_0(argv: list[str], sig: signal.Signals) -> tuple[int, list[str]]:
    """Run the harness; once round 0's last run is printed, let round 1 begin, then signal it.
    Returns the exit status and every stderr line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    round_done = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            m = LINE.match(line)
            if m and m[1] == "0" and m[2] == ROUND[-1]:
                round_done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with reaped(proc):
        assert round_done.wait(600), "round 0 never ended:\n" + "\n".join(lines[-20:])
        time.sleep(1.0)  # round 1 under way: a tracer is starting or running
        assert proc.poll() is None, "the bench ended before it could be interrupted"
        proc.send_signal(sig)
        rc = proc.wait(180)
    reader.join(10)
    return rc, lines


def _printed_round_0(lines: list[str]) -> dict[str, float]:
    """mode -> ns/event of round 0 as the progress lines said it, before the signal."""
    return {m[2]: float(m[3]) for m in map(LINE.match, lines) if m and m[1] == "0"}


def _check_kept(path: Path, printed: dict[str, float]) -> list[dict[str, str]]:
    rows = _rows(path)
    first = [r for r in rows if r["round"] == "0"]
    assert [r["mode"] for r in first] == list(ROUND)
    for r in first:  # the very runs printed before the stop
        assert float(r["ns_per_event"]) == pytest.approx(printed[r["mode"]], abs=0.06)
        if r["mode"] in ("bpftrace", "libbpf", "both:bpftrace", "both:libbpf"):
            assert r["events_counted"] == str(N), r  # the workload's own count
        if r["mode"] != "untraced":
            assert int(r["kernel_runs"]) >= N and float(r["kernel_ns_per_event"]) > 0, r
    later = [r for r in rows if r["round"] != "0"]
    assert all(r["round"] == "1" for r in later)  # round 1's finished runs, if any
    assert len({r["mode"] for r in later}) == len(later) < len(ROUND)
    return rows


def test_an_interrupted_bench_keeps_the_rounds_that_finished(tmp_path: Path) -> None:
    rc, lines = _interrupt_after_round_0(
        ["bench", "syscalls", "--events", str(N), "--rounds", "4", "--max-rounds", "4",
         "--warmup", "0", "--no-report", "-q", "--out", str(tmp_path)],
        signal.SIGINT,
    )
    assert rc == 128 + signal.SIGINT, lines[-10:]
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1] == "harness bench: interrupted by Ctrl-C"
    _check_kept(tmp_path / "syscalls.csv", _printed_round_0(lines))
    md = (tmp_path / "syscalls.md").read_text()
    assert "**Interrupted**: interrupted by Ctrl-C after 1 full round(s)." in md
    assert (tmp_path / "syscalls.programs.csv").exists()
    assert any(f"{tmp_path / 'syscalls.csv'}" in line for line in lines)


def test_an_interrupted_table_says_which_cells_ran(tmp_path: Path) -> None:
    rc, lines = _interrupt_after_round_0(
        ["bench", "syscalls", "--kernels", "host", "--bpftrace", "0.17,0.27", "--events", str(N),
         "--rounds", "3", "--max-rounds", "3", "--warmup", "0", "--no-report", "-q",
         "--out", str(tmp_path)],
        signal.SIGTERM,
    )
    assert rc == 128 + signal.SIGTERM, lines[-10:]
    assert not any("Traceback" in line for line in lines), lines
    assert lines[-1] == "harness bench: interrupted by SIGTERM"
    _check_kept(tmp_path / "syscalls-bpftrace0.17.0.csv", _printed_round_0(lines))
    assert not (tmp_path / "syscalls-bpftrace0.27.0.csv").exists()
    table = _rows(tmp_path / "syscalls-table.csv")
    assert [(r["bpftrace"], r["tracer"]) for r in table] == [
        ("v0.17.0", "floor"), ("v0.17.0", "bpftrace"), ("v0.17.0", "libbpf"), ("0.27", ""),
    ]
    for row in table[:3]:
        assert row["note"] == "interrupted by SIGTERM after 1 full round(s)" and not row["error"]
        assert float(row["kernel_ns_per_event"]) > 0 and row["csv"] == "syscalls-bpftrace0.17.0.csv"
    assert table[3]["error"] == "not run: interrupted by SIGTERM" and not table[3]["csv"]
    md = (tmp_path / "syscalls-table.md").read_text()
    assert "not measured: not run: interrupted by SIGTERM" in md and "Cut short:" in md

"""The workload around a run: its output is read all run and kept bounded in the run directory
(`seq 20000` once hung the run on a full pipe), and what it leaves running (`setsid -f`) ends
with it instead of outliving the harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.host.workload import CAPTURE_KEEP, Capture

REPO = Path(__file__).resolve().parent.parent
PROBE = "tracepoint:syscalls:sys_enter_getppid"


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own: a hang fails the test instead of blocking it."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "KTRACE_NO_REPORT": "1"}, check=False,
    )


def test_a_capture_keeps_head_and_tail_and_counts_the_cut() -> None:
    data = bytes(range(256)) * 40  # 10240 bytes, in uneven chunks
    capture = Capture(keep=1000)
    for i in range(0, len(data), 333):
        capture.add(data[i : i + 333])
    assert capture.counts() == {"bytes": 10240, "cut_bytes": 10240 - 1000}
    assert bytes(capture.head) == data[:500] and b"".join(capture.tail) == data[-500:]
    whole = Capture(keep=1000)
    whole.add(b"short\n")
    assert whole.text() == "short\n" and whole.counts()["cut_bytes"] == 0


@pytest.mark.usefixtures("needs_bpf")
def test_a_workload_writing_more_than_a_pipe_holds_runs_to_its_end(tmp_path: Path) -> None:
    done = harness("run", PROBE, "-c", "seq 20000", "-q", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    expected = subprocess.run(["seq", "20000"], capture_output=True, text=True).stdout
    assert len(expected) > 65536  # more than a pipe holds
    assert (tmp_path / "r" / "workload.stdout.txt").read_text() == expected
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["ended_by"] == "workload-exit" and meta["workload_status"] == 0
    assert meta["workload_output"]["stdout"] == {"bytes": len(expected), "cut_bytes": 0}


@pytest.mark.usefixtures("needs_bpf")
def test_a_flood_of_output_is_kept_bounded_with_the_cut_counted(tmp_path: Path) -> None:
    cmd = "sh -c 'seq 1000000; echo oops >&2'"
    done = harness("run", PROBE, "-c", cmd, "-q", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    expected = subprocess.run(["seq", "1000000"], capture_output=True).stdout
    kept = (tmp_path / "r" / "workload.stdout.txt").read_bytes()
    half = CAPTURE_KEEP // 2
    cut = len(expected) - 2 * half
    note = f"\n[harness: {cut} bytes of the workload's output cut here]\n".encode()
    assert kept == expected[:half] + note + expected[-half:]
    assert (tmp_path / "r" / "workload.stderr.txt").read_text() == "oops\n"
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["workload_output"]["stdout"] == {"bytes": len(expected), "cut_bytes": cut}
    assert any(f"{cut} bytes" in w and "stdout" in w for w in meta["warnings"])


def _sleepers(tag: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", tag.encode()]:
            found.append(int(entry))
    return found


@pytest.mark.usefixtures("needs_bpf")
def test_a_daemon_the_workload_leaves_behind_ends_with_it(tmp_path: Path) -> None:
    tag = f"97.{uuid.uuid4().int % 10**9}"  # a sleep of its own, to look for afterwards
    try:
        done = harness("run", PROBE, "--count-by", "comm", "-c", f"setsid -f sleep {tag}",
                       "-d", "1s", "-q", "--out", str(tmp_path / "r"), timeout=60)
        assert done.returncode == 0, done.stderr
        assert _sleepers(tag) == []
    finally:
        for pid in _sleepers(tag):
            os.kill(pid, 9)
    run = tmp_path / "r"
    assert {"run.json", "stdout.txt", "count.csv"} <= {p.name for p in run.iterdir()}
    meta = json.loads((run / "run.json").read_text())
    assert meta["ended_by"] == "workload-exit" and meta["workload_status"] == 0
    assert any("left 1 process" in w for w in meta["warnings"]), meta["warnings"]


@pytest.mark.usefixtures("needs_bpf")
def test_a_workload_that_cannot_run_says_why_in_one_line(tmp_path: Path) -> None:
    done = harness("run", PROBE, "-c", "no-such-command-here", "-q", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "status 127" in last and "cannot run 'no-such-command-here'" in last, done.stderr
    assert "Traceback" not in done.stderr

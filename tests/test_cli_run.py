"""`harness run` with bpftrace/BCC habits: -c CMD, -d 500ms, -q, and a word when nothing matched."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.paths import workload

pytestmark = pytest.mark.kernel


def test_dash_c_and_duration_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = f"{sys.executable} {workload('syscall_loop.py')} --count 700"
    argv = ["run", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm",
            "--workload-pid", "-c", loop, "-d", "30s", "-q", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    frame = pd.read_csv(tmp_path / "r" / "count.csv")
    assert frame["value"].sum() == 700  # the workload's own count, not ours


def test_a_run_that_matched_nothing_says_so(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Every spec map gets its CSV even with no event: the header it would have had, no rows;
    the run, run.json and summary.md name the maps that saw nothing."""
    import json

    loop = f"{sys.executable} {workload('syscall_loop.py')} --count 50"
    argv = ["run", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm,kstack",
            "--hist", "args.__syscall_nr", "--comm", "nosuchcomm", "-c", loop,
            "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run = tmp_path / "r"
    meta = json.loads((run / "run.json").read_text())
    maps = [m for m in meta["program"].split() if m.startswith("@")]  # the program's own maps
    names = sorted(m.split("[")[0] for m in maps)
    assert len(names) == 2 and sorted(meta["no_events"]) == names
    assert f"no events: {', '.join(meta['no_events'])} got no entry" in out
    headers = {p.name: p.read_text() for p in run.glob("*.csv")}
    assert headers == {"count.csv": "comm,kstack,value\n", "hist.csv": "lo,hi,count\n"}
    assert "no_events" in (run / "summary.md").read_text()


@pytest.mark.parametrize("bad", ["nan", "inf", "-1", "0", "5 parsecs"])
def test_bad_duration_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "tracepoint:syscalls:sys_enter_getppid", "-d", bad])
    assert exit_info.value.code == 2
    assert "is not a duration" in capsys.readouterr().err


def test_attach_on_a_probe_line_explains_equivalents(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "kprobe:udp_send_skb", "--arg", "skb=struct sk_buff *", "--count-by",
               "kstack", "--attach", "tracepoint", "-d", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "only switches between the equivalents of a catalog entry" in err and "ktrace" in err


def test_crosscheck_takes_dash_c_and_dash_q(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    loop = f"{sys.executable} {workload('syscall_loop.py')} --count 300"
    argv = ["crosscheck", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm",
            "-c", loop, "-q", "--out", str(tmp_path / "x")]
    assert main(argv) == 0
    assert "PASS" in capsys.readouterr().out
    for side in ("bpftrace", "libbpf"):  # the workload's own count, seen by both tracers
        assert pd.read_csv(tmp_path / "x" / side / "count.csv")["value"].sum() == 300

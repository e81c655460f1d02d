"""`harness parse` and report.rundir run directories, on corpus files and a live bpftrace run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.output.frames import to_frames
from harness.output.parse import parse_json, parse_text
from harness.report.rundir import csv_name, fold_stack, new_run_dir, write_run_dir

DATA = Path(__file__).resolve().parent / "data"
UDP = DATA / "corpus" / "udp_kstack"


def test_cli_summary_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(UDP / "stdout.txt"), "--csv", str(tmp_path / "run")]) == 0
    shown = capsys.readouterr().out
    assert "format text, probes 2" in shown and "@stacks  (1 rows)" in shown
    stacks = pd.read_csv(tmp_path / "run" / "stacks.csv")
    folded = stacks["kstack"].iloc[0].split(";")  # named by its frames
    assert folded[0] == "entry_SYSCALL_64_after_hwframe+118"  # root first
    assert folded[-1].startswith("__dev_queue_xmit+")
    assert stacks["value"].iloc[0] == 12
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["format"] == "text" and meta["probes"] == 2
    lens = pd.read_csv(tmp_path / "run" / "len_lin.csv")
    assert lens["hi"].isna().iloc[-1] and lens["count"].sum() == 12


def test_cli_json_guess_matches_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parse", str(UDP / "stdout.json")]) == 0
    from_json = capsys.readouterr().out
    assert "format json, probes 2" in from_json
    assert main(["parse", str(UDP / "stdout.txt"), "--format", "text"]) == 0
    from_text = capsys.readouterr().out
    heads = [[line for line in out.splitlines() if line.startswith("@")]
             for out in (from_json, from_text)]
    assert heads[0] == heads[1] and len(heads[0]) == 10


@pytest.mark.parametrize(("content", "fmt", "needle"), [
    (None, None, "cannot read"),
    ("@s[\n    udp_send_skb+1\n", "text", "stack key not closed"),
    ('{"type": "map", "data"\n', "json", "not bpftrace json"),
    ("Attaching 1 probe...\n@x: 3\n", "json", "no bpftrace json record"),
    ('{"type": "attached_probes", "data": {"probes": 1}}\n', "text", "--format json"),
    ("@h:\n[1]   1 |@@@|\n[2, 4) junk\n", "text", "hist bucket line not understood"),
])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 content: str | None, fmt: str | None, needle: str) -> None:
    path = tmp_path / "out.txt"
    if content is not None:
        path.write_text(content)
    argv = ["parse", str(path)] + (["--format", fmt] if fmt else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_results_names_and_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert csv_name("@") == "at.csv" and csv_name("@len") == "len.csv"
    assert fold_stack(("leaf", "mid", "root")) == "root;mid;leaf"
    monkeypatch.setenv("KTRACE_RESULTS", str(tmp_path))
    run = new_run_dir("parse")
    assert run.parent == tmp_path and run.name.startswith("parse-") and run.is_dir()
    assert new_run_dir("parse") != run
    frames = to_frames(parse_text("@: 3\n@m[1, a b]: 2\n"))
    write_run_dir(run, frames, {"command": "x", "path": tmp_path})
    assert (run / "at.csv").read_text() == "value\n3\n"
    assert (run / "m.csv").read_text() == "key0,key1,value\n1,a b,2\n"
    assert json.loads((run / "run.json").read_text())["path"] == str(tmp_path)


PROGRAM = DATA / "corpus" / "negative_hist" / "program.bt"


def test_live_bpftrace_text_and_json_agree(needs_bpf: None) -> None:
    """The installed bpftrace, now: both formats of one program give equal frames."""
    runs = [subprocess.run(["bpftrace", *flags, str(PROGRAM)], capture_output=True, text=True,
                           timeout=120, check=True).stdout for flags in ([], ["-f", "json"])]
    text, js = to_frames(parse_text(runs[0])), to_frames(parse_json(runs[1]))
    assert set(text) == set(js) and len(text) >= 8
    for name in text:
        order = list(text[name].columns)
        left = text[name].sort_values(order[:-1]).reset_index(drop=True)
        right = js[name].sort_values(order[:-1]).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, obj=name)

"""CLI tables and argument types (pure): nothing hidden without a note, durations with units."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.cli.options import duration
from harness.cli.tables import render
from harness.errors import UsageError


def test_value_table_largest_first_and_says_how_many_rows_are_hidden() -> None:
    frame = pd.DataFrame({"comm": [f"c{i}" for i in range(25)], "value": list(range(25))})
    text = render(frame, top=10)
    lines = text.splitlines()
    assert "c24" in lines[2] and "c15" in text and "c14" not in text
    assert lines[-1] == "… 15 more rows (of 25; --top to show more)"


def test_hist_top_counts_nonzero_buckets_and_notes_the_empty_ones() -> None:
    frame = pd.DataFrame({
        "lo": pd.array([0, 1, 2, 4, 8], dtype="Int64"),
        "hi": pd.array([1, 2, 4, 8, None], dtype="Int64"),
        "count": [5, 0, 7, 0, 9],
    })
    text = render(frame, top=2)
    assert "[8, ...)" not in text and "[0]" in text and "[2, 4)" in text
    assert "2 empty buckets hidden" in text
    assert "… 1 more rows (of 3; --top to show more)" in text


def test_stacks_are_shown_whole_unless_a_depth_is_given() -> None:
    stack = tuple(f"frame{i}" for i in range(40))
    frame = pd.DataFrame({"kstack": pd.Series([stack], dtype=object), "value": [3]})
    assert all(f"frame{i}" in render(frame) for i in range(40))
    cut = render(frame, stack_depth=5)
    assert "frame4" in cut and "frame5" not in cut and "… 35 more frames" in cut


def test_time_series_shows_the_last_printing_and_says_so() -> None:
    frame = pd.DataFrame({"printing": [1, 1, 2], "t_s": [0.2, 0.2, 0.4],
                          "key0": [1, 2, 1], "value": [10, 20, 30]})
    text = render(frame)
    assert "30" in text and "20" not in text
    assert "printing 2 of 2 shown; every printing is in the CSV" in text


def test_empty_map_says_so() -> None:
    assert render(pd.DataFrame({"key0": [], "value": []})).startswith("(no entries)")


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("5s", 5.0), ("2m", 120.0), ("1.5", 1.5), ("250us", 0.00025), ("1h", 3600.0),
])
def test_durations_with_units(text: str, seconds: float) -> None:
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "0", "0s", "5 parsecs", "", "1e400"])
def test_bad_durations_are_refused_with_the_fix(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape("e.g. 500ms, 5s, 2m")):
        duration(text)


def test_multi_key_count_by_gives_one_column_per_key() -> None:
    from harness.spec.options import split_keys

    assert split_keys(["ustack,kstack"]) == ("ustack", "kstack")
    assert split_keys(["comm", "pid, cpu"]) == ("comm", "pid", "cpu")
    assert split_keys(['str(args.name, 8),comm']) == ("str(args.name, 8)", "comm")
    assert split_keys(['"a,b",cpu']) == ('"a,b"', "cpu")
    with pytest.raises(UsageError, match="separate keys with one comma"):
        split_keys(["comm,,pid"])


def test_progress_is_silent_off_a_terminal_and_amounts_read_well() -> None:
    from harness.cli.progress import amount, terminal_progress
    from harness.progress import silent

    with terminal_progress() as progress:  # pytest's stderr is not a TTY
        assert progress is silent
    assert amount(3.1e6, 7e7, "bytes") == "3.1/70.0 MB"
    assert amount(4, 10, "rounds") == "4/10 rounds"
    assert amount(12, None, "s") == "12 s"
    assert amount(None, None, "") == ""


def test_parse_cli_reports_its_yield_and_says_when_a_line_was_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from harness.cli import main

    path = tmp_path / "out.txt"
    path.write_text("Attaching 1 probe...\n@x[1]: 2\n@y[oops\nhello\n")
    assert main(["parse", str(path)]) == 0
    captured = capsys.readouterr()
    assert "yield: 1 maps, 1 printings, 1 entries, 1 printed lines, 1 warnings, 1 unparsed" in \
        captured.out
    assert "1 line(s) of bpftrace output were not read" in captured.err
    assert "warning: line 3:" in captured.err

"""Frames compared across bpftrace releases (harness.compare.versions) and the matrix rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from harness.compare.versions import compare_frames, compare_map

LABELS = ("0.17", "0.27")


def test_equal_stacks_and_hist_are_equal_key_by_key() -> None:
    stacks = pd.DataFrame({"kstack": ["a;b", "a;c"], "value": [3, 4]})
    hist = pd.DataFrame({"lo": [0, 64], "hi": [64, 128], "count": [1, 2]})
    out = compare_frames({"@s": stacks, "@h": hist}, {"@s": stacks[::-1], "@h": hist}, LABELS)
    assert [(d.map_name, d.equal, d.how) for d in out] == [
        ("@h", True, "key by key"), ("@s", True, "key by key")
    ]


def test_a_count_that_differs_is_a_diff_frame() -> None:
    left = pd.DataFrame({"kstack": ["a;b", "a;c"], "value": [3, 4]})
    right = pd.DataFrame({"kstack": ["a;b", "a;c"], "value": [3, 5]})
    d = compare_map("@s", left, right, LABELS)
    assert not d.equal
    assert d.diff.to_dict("records") == [{"kstack": "a;c", "value_0.17": 4, "value_0.27": 5}]


def test_a_key_only_one_release_saw_is_a_diff_row() -> None:
    left = pd.DataFrame({"lo": [0, 64], "hi": [64, 128], "count": [1, 2]})
    right = pd.DataFrame({"lo": [0], "hi": [64], "count": [1]})
    d = compare_map("@h", left, right, LABELS)
    assert not d.equal and d.diff["lo"].tolist() == ["64"]
    assert pd.isna(d.diff["count_0.27"].iloc[0])


def test_per_run_keys_compare_as_the_multiset_of_counts() -> None:
    left = pd.DataFrame({"hash": [11, 12], "value": [20, 20]})
    same = pd.DataFrame({"hash": [98, 99], "value": [20, 20]})
    other = pd.DataFrame({"hash": [98, 99], "value": [30, 10]})
    assert compare_map("@hash", left, same, LABELS).equal
    d = compare_map("@hash", left, other, LABELS)
    assert not d.equal and d.how.startswith("keys are per-run values")
    assert d.diff["value_0.27"].tolist() == [10, 30]


def test_a_map_one_release_did_not_print_differs() -> None:
    one = pd.DataFrame({"value": [1]})
    out = compare_frames({"@a": one, "@b": one}, {"@a": one}, LABELS)
    assert [(d.map_name, d.equal) for d in out] == [("@a", True), ("@b", False)]
    assert out[1].how == "only 0.17 printed it"


@pytest.mark.kernel
def test_matrix_rows_per_release_on_the_host(tmp_path: Path) -> None:
    from harness.cli import main

    rc = main(["matrix", "ktrace", "--kernels", "host", "--bpftrace", "0.17,latest",
               "--count", "30", "--out", str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / "matrix.csv").open()))
    assert [r["bpftrace"] for r in rows] == ["bpftrace v0.17.0", "bpftrace v0.27.0"]
    assert [r["verdict"] for r in rows] == ["pass", "pass"]
    assert [r["bpftrace_events"] for r in rows] == ["30", "30"]
    assert [r["versions_agree"] for r in rows] == ["-", "yes"]
    assert rc == 0

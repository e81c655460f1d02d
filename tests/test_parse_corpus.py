"""Real bpftrace 0.17 runs (scripts/make_corpus.py): text and -f json give equal frames."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.output.frames import all_printings, to_frames
from harness.output.model import Output
from harness.output.parse import parse_json, parse_text

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "corpus"  # bpftrace 0.17 (installed here)
NEWEST = DATA / "corpus_0.23"  # the same cases run by bpftrace 0.23.2 (scripts/make_corpus.py)
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.json").exists())
ALL = [(v, c) for v, root in (("0.17", CORPUS), ("0.23", NEWEST))
       for c in sorted(p.name for p in root.iterdir() if (p / "case.json").exists())]


def _load(case: str, version: str = "0.17") -> tuple[dict, Output, Output]:
    d = (CORPUS if version == "0.17" else NEWEST) / case
    meta = json.loads((d / "case.json").read_text())
    return meta, parse_text((d / "stdout.txt").read_text()), parse_json(
        (d / "stdout.json").read_text())


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order: bpftrace orders entries by value, ties in hash order per run."""
    keyed = frame.assign(_k=[repr(row) for row in frame.itertuples(index=False)])
    return keyed.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def test_corpus_has_the_cases_for_both_versions() -> None:
    want = {"udp_kstack", "syscalls_tuples", "odd_strings", "negative_hist", "print_interval"}
    assert {c for v, c in ALL if v == "0.17"} >= want
    assert {c for v, c in ALL if v == "0.23"} >= want
    assert "v0.23" in json.loads((NEWEST / "udp_kstack" / "case.json").read_text())["bpftrace"]


@pytest.mark.parametrize(("version", "case"), ALL)
def test_text_and_json_give_equal_frames(version: str, case: str) -> None:
    meta, text, js = _load(case, version)
    names = meta["key_names"]
    tf, jf = to_frames(text, names), to_frames(js, names)
    assert tf and set(tf) == set(jf)
    for name in tf:
        left, right = _canonical(tf[name]), _canonical(jf[name])
        pd.testing.assert_frame_equal(left, right, obj=f"{case} {name}")
    assert text.probes == js.probes
    if meta["workload"] is None:  # no traced command printing its pid into stdout
        assert text.lines == js.lines


@pytest.mark.parametrize("version", ["0.17", "0.23"])
def test_udp_kstack_counts_every_datagram(version: str) -> None:
    _, text, _ = _load("udp_kstack", version)
    f = to_frames(text)
    stacks = f["@stacks"]
    assert stacks["value"].sum() == 12
    assert all(any(fr.startswith("udp_send_skb") for fr in st) for st in stacks["key0"])
    assert stacks["key0"].iloc[0][0].startswith("__dev_queue_xmit")  # leaf first
    assert f["@len"]["count"].sum() == 12
    assert pd.isna(f["@len_lin"]["hi"].iloc[-1])  # [1000, ...)
    assert f["@len_stats"][["count", "total"]].values.tolist() == [[12, f["@bytes"]["value"][0]]]
    assert f["@by_comm_stack"]["key0"].tolist() == ["python"]
    assert set(f["@tuple"]["key1"]) == {0}


@pytest.mark.parametrize("version", ["0.17", "0.23"])
def test_odd_strings_keep_spaces_commas_brackets_quotes(version: str) -> None:
    meta, text, _ = _load("odd_strings", version)
    f = to_frames(text, meta["key_names"])
    assert '/tmp/a b, [c]: "d" {e}' in f["@paths"]["path"].tolist()
    assert f["@label"].values.tolist() == [["key: with colon", 3, 7],
                                           ["brackets ] [ in", -4, 8]]
    assert f["@str_value"]["value"].tolist() == ["a value, with: stuff"]
    assert f["@empty"]["value"].tolist() == [""]
    assert text.lines == ["hello: @x[1]: 3 (printf that looks like a map)"]


@pytest.mark.parametrize("version", ["0.17", "0.23"])
def test_negative_values_and_open_hist_ends(version: str) -> None:
    _, text, _ = _load("negative_hist", version)
    f = to_frames(text)
    assert dict(zip(f["@neg"]["key0"], f["@neg"]["value"], strict=True)) == {-5: -3, 0: 0, -1: 9}
    assert f["@total"]["value"][0] == -10 and f["@avg_neg"]["value"][0] == -9
    lh = f["@lh"]
    assert pd.isna(lh["lo"].iloc[0]) and lh["hi"].iloc[0] == 0
    assert pd.isna(lh["hi"].iloc[-1]) and lh["lo"].iloc[-1] == 30
    assert [m.kind for m in text.maps if m.name in ("@h", "@lh")] == ["hist", "lhist"]
    both = f["@h"].dropna(subset=["lo", "hi"])
    assert (both["hi"] > both["lo"]).all()


@pytest.mark.parametrize("version", ["0.17", "0.23"])
def test_repeated_printings_are_numbered(version: str) -> None:
    _, text, js = _load("print_interval", version)
    for out in (text, js):
        sq = all_printings(out, "@sq")
        assert [len(p) for p in sq] == [1, 2, 3, 3]
        assert [p.printing for p in sq] == [1, 2, 3, 4]
        assert [p.values[0] for p in all_printings(out, "@ticks")] == [1, 2, 3, 3]
    assert text.lines[:3] == ["start", "tick 1", "tick 2"]

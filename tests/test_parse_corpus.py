"""Real bpftrace 0.17 runs (scripts/make_corpus.py): text and -f json give equal frames.

The same cases run by 0.23 and 0.27 are read here too (`load(case, version)`); what only 0.27
prints differently is in test_versions_parse.py."""

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
CORPORA = {"0.17": CORPUS, "0.23": NEWEST, "0.27": DATA / "corpus_0.27"}  # (0.27: Debian forky)
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.json").exists())
ALL = [(v, c) for v, root in (("0.17", CORPUS), ("0.23", NEWEST))
       for c in sorted(p.name for p in root.iterdir() if (p / "case.json").exists())]


def load(case: str, version: str = "0.17") -> tuple[dict, Output, Output]:
    """A case's case.json, and its text and json output parsed."""
    d = CORPORA[version] / case
    meta = json.loads((d / "case.json").read_text())
    return meta, parse_text((d / "stdout.txt").read_text()), parse_json(
        (d / "stdout.json").read_text())


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order: bpftrace orders entries by value, ties in hash order per run."""
    keyed = frame.assign(_k=[repr(row) for row in frame.itertuples(index=False)])
    return keyed.sort_values("_k", kind="stable").drop(columns="_k").reset_index(drop=True)


def test_corpus_has_the_cases_for_both_versions() -> None:
    want = {"udp_kstack", "syscalls_tuples", "odd_strings", "negative_hist", "print_interval"}
    assert {c for v, c in ALL if v == "0.17"} >= want
    assert {c for v, c in ALL if v == "0.23"} >= want
    assert "v0.23" in json.loads((NEWEST / "udp_kstack" / "case.json").read_text())["bpftrace"]


ISSUE_9_CASES = {  # tests/data/corpus, made by scripts/make_corpus.py (same events per case)
    "interval_clear", "print_phases", "print_interval", "string_edges", "odd_strings",
    "stack_values", "keyed_syms", "zero_clear_delete", "hist_64bit", "negative_hist",
    "stats_extremes", "unquoted_values", "udp_kstack", "syscalls_tuples"}


def test_corpus_has_every_issue_9_case_from_one_run_each() -> None:
    assert set(CASES) >= ISSUE_9_CASES
    for case in CASES:
        meta = json.loads((CORPUS / case / "case.json").read_text())
        assert meta["same_events"] and "v0.17" in meta["bpftrace"]


@pytest.mark.parametrize("case", CASES)
def test_every_line_accounted_and_entries_equal_json(case: str) -> None:
    _, text, js = load(case)
    raw = (CORPUS / case / "stdout.txt").read_text()
    tc, jc = text.counts(), js.counts()
    assert tc["unparsed"] == 0 and jc["unparsed"] == 0, text.warnings
    assert (tc["maps"], tc["entries"]) == (jc["maps"], jc["entries"])
    # every non-blank line is in a map entry, a printed line or a warning: the printed
    # lines are exactly the lines that are not map output
    map_lines = [ln for ln in raw.splitlines() if ln.startswith("@")]
    assert len(map_lines) <= tc["entries"] + sum(1 for w in text.warnings if "re-joined" in w)


@pytest.mark.parametrize("case", CASES)
def test_harness_parse_reports_no_unparsed_line(case: str, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    from harness.cli import main

    assert main(["parse", str(CORPUS / case / "stdout.txt")]) == 0
    assert "unparsed" not in capsys.readouterr().err


@pytest.mark.parametrize(("version", "case"), ALL)
def test_text_and_json_give_equal_frames(version: str, case: str) -> None:
    meta, text, js = load(case, version)
    names = meta["key_names"]
    tf, jf = to_frames(text, names), to_frames(js, names)
    assert tf and set(tf) == set(jf)
    for name in tf:
        left, right = canonical(tf[name]), canonical(jf[name])
        pd.testing.assert_frame_equal(left, right, obj=f"{case} {name}")
    assert text.probes == js.probes
    if meta["workload"] is None:  # no traced command printing its pid into stdout
        assert text.lines == js.lines


@pytest.mark.parametrize("version", ["0.17", "0.23", "0.27"])
def test_udp_kstack_counts_every_datagram(version: str) -> None:
    _, text, _ = load("udp_kstack", version)
    f = to_frames(text)
    stacks = f["@stacks"]
    assert stacks["value"].sum() == 12
    # a kernel stack (rooted in a system call's entry), so its column is named kstack
    assert all(any(fr.startswith("udp_send_skb") for fr in st) for st in stacks["kstack"])
    assert stacks["kstack"].iloc[0][0].startswith("__dev_queue_xmit")  # leaf first
    assert f["@len"]["count"].sum() == 12
    assert pd.isna(f["@len_lin"]["hi"].iloc[-1])  # [1000, ...)
    assert f["@len_stats"][["count", "total"]].values.tolist() == [[12, f["@bytes"]["value"][0]]]
    assert f["@by_comm_stack"]["key0"].tolist() == ["python"]
    assert set(f["@tuple"]["key1"]) == {0}


@pytest.mark.parametrize("version", ["0.17", "0.23"])
def test_odd_strings_keep_spaces_commas_brackets_quotes(version: str) -> None:
    meta, text, _ = load("odd_strings", version)
    f = to_frames(text, meta["key_names"])
    assert '/tmp/a b, [c]: "d" {e}' in f["@paths"]["path"].tolist()
    assert f["@label"].values.tolist() == [["key: with colon", 3, 7],
                                           ["brackets ] [ in", -4, 8]]
    assert f["@str_value"]["value"].tolist() == ["a value, with: stuff"]
    assert f["@empty"]["value"].tolist() == [""]
    assert text.lines == ["hello: @x[1]: 3 (printf that looks like a map)"]


@pytest.mark.parametrize("version", ["0.17", "0.23"])
def test_negative_values_and_open_hist_ends(version: str) -> None:
    _, text, _ = load("negative_hist", version)
    f = to_frames(text)
    assert dict(zip(f["@neg"]["key0"], f["@neg"]["value"], strict=True)) == {-5: -3, 0: 0, -1: 9}
    assert f["@total"]["value"][0] == -10 and f["@avg_neg"]["value"][0] == -9
    lh = f["@lh"]
    assert pd.isna(lh["lo"].iloc[0]) and lh["hi"].iloc[0] == 0
    assert pd.isna(lh["hi"].iloc[-1]) and lh["lo"].iloc[-1] == 30
    assert [m.kind for m in text.maps if m.name in ("@h", "@lh")] == ["hist", "lhist"]
    both = f["@h"].dropna(subset=["lo", "hi"])
    assert (both["hi"] > both["lo"]).all()


@pytest.mark.parametrize("version", ["0.17", "0.23", "0.27"])
def test_repeated_printings_are_numbered(version: str) -> None:
    _, text, js = load("print_interval", version)
    for out in (text, js):
        sq = all_printings(out, "@sq")
        assert [len(p) for p in sq] == [1, 2, 3, 3]
        assert [p.printing for p in sq] == [1, 2, 3, 4]
        assert [p.values[0] for p in all_printings(out, "@ticks")] == [1, 2, 3, 3]
    assert text.lines[:3] == ["start", "tick 1", "tick 2"]


def _frames(case: str) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], Output, Output]:
    meta, text, js = load(case)
    return to_frames(text, meta["key_names"]), to_frames(js, meta["key_names"]), text, js


def test_print_phases_every_printing_sums_to_the_workload_calls() -> None:
    tf, _, text, _ = _frames("print_phases")
    calls = tf["@calls"]
    assert calls.columns.tolist() == ["printing", "t_s", "comm", "value"]
    assert calls["printing"].tolist() == [1, 2, 3, 4]
    assert calls["value"].tolist() == [10, 20, 30, 40]  # the workload's phases
    assert calls["value"].sum() == 100
    assert calls["t_s"].isna().all()  # a file has no clock
    assert text.lines[1:] == [f"phase {i} done" for i in range(1, 5)]
    assert tf["@per_phase"]["value"].tolist()[:4] == [10, 20, 30, 40]


def test_interval_clear_keeps_each_printing() -> None:
    tf, _, _, _ = _frames("interval_clear")
    per_tick = tf["@per_tick"]
    assert per_tick["printing"].tolist() == [1, 2, 3, 4, 5]
    assert per_tick["key0"].tolist() == [1, 0, 1, 0, 1]
    lin = tf["@lin"]
    assert lin.groupby("printing")["count"].sum().tolist() == [1, 1, 1, 1, 1]
    assert tf["@total"]["value"].tolist() == [1, 3, 6, 10, 15, 15]  # the exit printing last


def test_string_edges_newlines_rejoined_and_bytes_decoded() -> None:
    tf, _, text, js = _frames("string_edges")
    assert set(tf["@nl_key"]["k"]) == {"line one\nline two", "plain", "three\nline\nkey"}
    assert dict(zip(tf["@nl_val"]["k"], tf["@nl_val"]["value"], strict=True)) == {
        "a": "first\nsecond", "b": "plain", "c": "x\ny\nz", "d": "end"}
    assert set(tf["@colon"]["k"]) == {"k]: v", "[x]: [y]"}
    assert sorted(tf["@comma"][["s", "n"]].values.tolist()) == [["a, b", 1], ["c, d, e", 2],
                                                                ["f", 3]]
    assert tf["@tab"].values.tolist() == [["a\tb", "c\td"]]
    assert dict(zip(tf["@utf8"]["k"], tf["@utf8"]["value"], strict=True)) == {
        "été": "café", "€": "🐝"}
    assert text.lines == [] and any("re-joined" in w for w in text.warnings)
    assert any("uffffff" in w for w in js.warnings)


def test_stack_values_are_frames() -> None:
    tf, _, _, _ = _frames("stack_values")
    for name in ("@last_k", "@last_k3", "@by_comm"):
        for stack in tf[name]["value"]:
            assert isinstance(stack, tuple) and stack[0].startswith("__dev_queue_xmit+")
    assert {len(s) for s in tf["@last_k3"]["value"]} == {3}
    assert any(f.startswith("udp_send_skb+") for f in tf["@last_k"]["value"].iloc[0])
    assert sorted(tf["@last_k"]["key0"]) == [43, 142, 1042]


def test_keyed_syms_glued_entries_split() -> None:
    tf, _, text, _ = _frames("keyed_syms")
    assert tf["@ksym"]["value"].tolist() == ["vfs_read", "vfs_write"]
    assert tf["@inet4"]["value"].tolist() == ["127.0.0.1", "10.0.0.2"]
    assert tf["@inet6"]["value"].tolist() == ["::1", "fe80::1"]
    assert tf["@usym"]["value"].tolist() == ["0", "0x1"]
    assert sum("on one line" in w for w in text.warnings) == 4


def test_zero_clear_delete_and_empty_maps() -> None:
    tf, _, _, _ = _frames("zero_clear_delete")
    for name in ("@zero_hist", "@zero_keyed_hist"):
        assert tf[name].columns.tolist()[-3:] == ["lo", "hi", "count"] and tf[name].empty
    assert tf["@zeroed"]["value"].tolist() == [0, 0]
    assert tf["@deleted"]["printing"].tolist() == [1, 1, 2, 2]
    assert tf["@deleted"]["key0"].tolist() == [1, 3, 1, 3]
    assert "@cleared" not in tf and "@all_deleted" not in tf  # 0.17 prints no empty map
    assert tf["@zero_stats"][["count", "average", "total"]].values.tolist() == [[0, 0, 0]]


def test_hist_2g_bucket_repaired_in_json() -> None:
    tf, jf, _, js = _frames("hist_64bit")
    for frames in (tf, jf):
        top = frames["@h"].dropna().iloc[-1]
        assert (top["lo"], top["hi"], top["count"]) == (1 << 31, 1 << 32, 4)
        assert frames["@keyed"][["key0", "lo", "hi"]].values.tolist()[:2] == [
            [1, 1 << 31, 1 << 32], [2, 1 << 31, 1 << 32]]
    assert any("[2G, 4G)" in w and w.startswith("line ") for w in js.warnings)


def test_stats_int64_extremes() -> None:
    tf, _, _, _ = _frames("stats_extremes")
    big, small = (1 << 63) - 1, -(1 << 63)
    assert tf["@max_st"].values.tolist() == [[1, big, big]]
    assert tf["@min_st"].values.tolist() == [[1, small, small]]
    assert tf["@mx"]["value"].tolist() == [big]
    assert tf["@sum_wrap"]["value"].tolist() == [small]


def test_unquoted_json_values_quoted() -> None:
    tf, _, _, js = _frames("unquoted_values")
    assert tf["@err"]["value"].tolist() == ["No such file or directory", "Permission denied"]
    assert tf["@mac"]["value"].tolist() == ["00:00:00:00:00:00"]
    assert tf["@one_cg"]["value"].iloc[0].startswith("unified:/")
    assert sum("without quotes" in w for w in js.warnings) == 8


def test_text_parsed_in_many_threads_at_once_equals_each_runs_json() -> None:
    """The one compiled parser serves parses in other threads at the same time (fleets parse
    each host's output in its own thread): each parse keeps its own builder, so every case's
    text still gives the frames its own -f json gives, however the parses interleave."""
    from concurrent.futures import ThreadPoolExecutor

    cases = ALL * 3
    texts = {(v, c): ((CORPUS if v == "0.17" else NEWEST) / c / "stdout.txt").read_text()
             for v, c in cases}
    with ThreadPoolExecutor(max_workers=8) as pool:
        parsed = list(pool.map(lambda vc: parse_text(texts[vc]), cases))
    for (version, case), text in zip(cases, parsed, strict=True):
        meta, _, js = load(case, version)
        tf, jf = to_frames(text, meta["key_names"]), to_frames(js, meta["key_names"])
        assert set(tf) == set(jf), (version, case)
        for name in tf:
            pd.testing.assert_frame_equal(canonical(tf[name]), canonical(jf[name]),
                                          obj=f"{version} {case} {name}")

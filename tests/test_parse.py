"""harness.output.parse on hand-written and saved bpftrace output (pure: no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.errors import HarnessError
from harness.output.frames import all_printings, to_frames
from harness.output.model import Bucket, Stack, Stats
from harness.output.parse import ParseError, parse_json, parse_text

DATA = Path(__file__).resolve().parent / "data"

SAMPLES = DATA / "samples"


def test_scalar_keyed_negative_and_tuple_keys() -> None:
    out = parse_text(
        "Attaching 2 probes...\n@a: 5\n@b[1]: 2\n@b[-3]: -4\n@d[1, ab]: 1\n@d[-2, c d]: 7\n"
    )
    assert out.probes == 2
    f = to_frames(out)
    assert f["@a"]["value"].tolist() == [5]
    assert f["@b"]["key0"].tolist() == [1, -3]
    assert f["@b"]["value"].tolist() == [2, -4]
    assert f["@b"]["value"].dtype == "int64"
    assert f["@d"][["key0", "key1"]].values.tolist() == [[1, "ab"], [-2, "c d"]]


def test_hist_bucket_forms() -> None:
    text = (
        "@e: \n"
        "(..., 0)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        "[0]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        "[1]                    0 |                                                    |\n"
        "[2, 4)                 0 |                                                    |\n"
        "[4K, 8K)               3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        "[1M, 2M)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                  |\n"
        "\n"
    )
    mp = parse_text(text).maps[0]
    assert mp.kind == "hist"
    assert mp.values[0] == [
        Bucket(None, 0, 1), Bucket(0, 1, 1), Bucket(1, 2, 0), Bucket(2, 4, 0),
        Bucket(4096, 8192, 3), Bucket(1 << 20, 2 << 20, 2),
    ]
    f = to_frames(parse_text(text))["@e"]
    assert f["lo"].dtype == "Int64"
    assert pd.isna(f["lo"].iloc[0])


def test_lhist_negative_and_open_ends() -> None:
    text = (
        "@f:\n"
        "(..., -10)             1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        "[-10, -5)              0 |                                                    |\n"
        "[-5, 0)                2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        "[100, ...)             4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
        "\n"
    )
    mp = parse_text(text).maps[0]
    assert mp.kind == "lhist"
    assert mp.values[0] == [Bucket(None, -10, 1), Bucket(-10, -5, 0), Bucket(-5, 0, 2),
                            Bucket(100, None, 4)]


def test_stats_and_repeated_printings_and_printf() -> None:
    text = ("Attaching 1 probe...\nhello: @x[1]: 3\n@b[1]: 1\n@b[2]: 2\n@b[1]: 1\n@b[2]: 5\n"
            "tick\n@b[1]: 9\n@g: count 2, average 6, total 12\n")
    out = parse_text(text)
    assert out.lines == ["hello: @x[1]: 3", "tick"]
    # print(@b); print(@b): bpftrace writes nothing between them, but an int key cannot come
    # twice in one printing, so key 1 again starts the second; the printf line is one too
    prints = all_printings(out, "@b")
    assert [(p.printing, p.values) for p in prints] == [(1, [1, 2]), (2, [1, 5]), (3, [9])]
    b = to_frames(out)["@b"]
    assert b.columns.tolist() == ["printing", "t_s", "key0", "value"]
    assert b[["printing", "key0", "value"]].values.tolist() == [[1, 1, 1], [1, 2, 2], [2, 1, 1],
                                                                [2, 2, 5], [3, 1, 9]]
    assert b["t_s"].isna().all()  # no clock: neither line times nor time() lines
    # the runner's arrival times cut them: the second print() came a second later
    timed = parse_text(text, line_times=[0, 0, 0, 0, 1, 1, 1, 2, 2])
    assert [(p.printing, p.values, p.t_s) for p in all_printings(timed, "@b")] == [
        (1, [1, 2], 0.0), (2, [1, 5], 1.0), (3, [9], 2.0)]
    g = next(m for m in out.maps if m.name == "@g")
    assert g.kind == "stats" and g.values == [Stats(2, 6, 12)]


def test_saved_sample_text_equals_json_except_bpf_prog_frames() -> None:
    text = to_frames(parse_text((SAMPLES / "mixed_0.17.txt").read_text()))
    js = to_frames(parse_json((SAMPLES / "mixed_0.17.json").read_text()))
    assert set(text) == set(js)
    for name in ("@h", "@mm", "@mx", "@n", "@z"):
        pd.testing.assert_frame_equal(text[name], js[name])
    # print(@b); print(@b) in one probe: json writes one record each, the text nothing between
    # them; the second starts where an int key comes again, as json's record does
    assert js["@b"]["printing"].tolist() == [1, 1, 2, 2, 3, 3]
    pd.testing.assert_frame_equal(text["@b"], js["@b"])
    # @j/@k keys hold a kstack of the BPF program itself, whose offset differs per run
    # the stacks' columns are named by their frames: a syscall's root, a user address
    assert list(text["@k"].columns) == ["kstack", "key1", "ustack", "value"]
    assert text["@k"]["key1"].tolist() == [5]
    assert text["@k"]["kstack"].iloc[0][1:] == js["@k"]["kstack"].iloc[0][1:]


def test_unparseable_text_raises_one_line_parse_error() -> None:
    with pytest.raises(ParseError) as info:
        parse_text("@e: \n[1]    0 |     |\n[2, 4)\n")
    err = info.value
    assert isinstance(err, HarnessError)
    assert "\n" not in str(err)
    assert err.line >= 2


def test_truncated_stack_key_raises() -> None:
    with pytest.raises(ParseError, match="line 2") as info:
        parse_text("Attaching 1 probe...\n@s[\n    udp_send_skb+1\n    ip_send_skb+2\n")
    assert info.value.text == "@s["


def test_bad_json_raises() -> None:
    with pytest.raises(ParseError, match="line 2"):
        parse_json('{"type": "attached_probes", "data": {"probes": 1}}\n{"type": "map", "data"\n')


def test_json_given_as_text_raises() -> None:
    with pytest.raises(ParseError, match="--format json") as info:
        parse_text('\n{"type": "attached_probes", "data": {"probes": 1}}\n')
    assert info.value.line == 1 and info.value.text.startswith('{"type"')


def test_text_given_as_json_raises() -> None:
    with pytest.raises(ParseError, match="no bpftrace json record") as info:
        parse_json("Attaching 1 probe...\n@x: 3\n")
    assert info.value.text == "Attaching 1 probe..."
    assert parse_json("").maps == []  # empty output is no run, not a format mix-up


def test_pty_line_ends_and_missing_final_newline() -> None:
    """bpftrace ends every line: one without a newline was cut off, so `@n: 4` may have been
    `@n: 4908`. It is not read as a value, and a warning names its line."""
    out = parse_text("Attaching 1 probe...\r\n^C\r\n@h:\r\n[1]  2 |@@|\r\n\r\n@n: 4")
    assert out.lines == ["^C"]
    f = to_frames(out)
    assert f["@h"][["lo", "hi", "count"]].values.tolist() == [[1, 2, 2]]
    assert "@n" not in f and out.unparsed == [6]
    assert out.warnings == ["line 6: incomplete: the output ends inside this line, without a "
                            "newline (cut off): '@n: 4' is not read as a value"]
    whole = parse_text("Attaching 1 probe...\r\n@n: 4\r\n")
    assert whole.maps[0].values == [4] and not whole.warnings


def test_grammar_ships_in_the_package_and_parser_is_built_once() -> None:
    from importlib import resources

    from harness.output import parse

    grammar = resources.files("harness.grammar").joinpath(parse.GRAMMAR_FILE)
    assert "ENTRY_RUN" in grammar.read_text()
    assert parse._parser() is parse._parser()


def test_perf_mode_kstack_and_ustack_beside_a_string_in_one_tuple() -> None:
    text = ("Attaching 2 probes...\nhello\n@u[\n"
            "\tffffffff81a1b2c3 udp_send_skb+1 ([kernel.kallsyms])\n"
            "\tffffffff81a1b2c4 udp_sendmsg+2407 ([kernel.kallsyms])\n"
            ", python3,\n"
            "        __libc_sendto+26 (/usr/lib/x86_64-linux-gnu/libc.so.6)\n"
            "        0x7f00\n"
            "]: 4\n@s[a]: b, 2]: 5\n\nbye\n")
    out = parse_text(text)
    assert out.probes == 2 and out.lines == ["hello", "bye"]
    frames = to_frames(out)
    row = frames["@u"].iloc[0]
    # named by their addresses: at or above 0xffff800000000000 kernel, below it user
    assert row["kstack"] == ("ffffffff81a1b2c3 udp_send_skb+1 ([kernel.kallsyms])",
                             "ffffffff81a1b2c4 udp_sendmsg+2407 ([kernel.kallsyms])")
    assert row["key1"] == "python3"
    assert row["ustack"] == ("__libc_sendto+26 (/usr/lib/x86_64-linux-gnu/libc.so.6)", "0x7f00")
    assert int(row["value"]) == 4
    assert frames["@s"].to_dict("records") == [{"key0": "a]: b", "key1": 2, "value": 5}]


def test_string_value_holding_bracket_colon_under_a_stack_key() -> None:
    # found by the property test: the stack key closes at its last line's first `]:`
    out = parse_text("@[\n    f+0\n    g+1\n]: v]: w, x\n")
    assert to_frames(out)["@"].to_dict("records") == [{"key0": ("f+0", "g+1"),
                                                        "value": "v]: w, x"}]


INTERVAL = ("Attaching 2 probes...\n"      # line 1
            "@c[1]: 3\n@c[2]: 4\n"       # 2-3
            "tick\n"                      # 4
            "@c[1]: 5\n"                  # 5
            "@h:\n[1]  2 |@@|\n\n"        # 6-8
            "@c[2]: 1\n@c[3]: 7\n")       # 9-10


def test_every_printing_kept_with_line_times() -> None:
    times = [0.0, 0.25, 0.26, 0.5, 0.75, 0.9, 0.9, 0.9, 1.0, 1.01]
    out = parse_text(INTERVAL, line_times=times)
    assert [(m.name, m.printing, m.line, m.t_s) for m in out.maps] == [
        ("@c", 1, 2, 0.25), ("@c", 2, 5, 0.75), ("@h", 1, 6, 0.9), ("@c", 3, 9, 1.0)]
    c = to_frames(out)["@c"]
    assert c.to_dict("list") == {"printing": [1, 1, 2, 3, 3], "t_s": [0.25, 0.25, 0.75, 1.0, 1.0],
                                 "key0": [1, 2, 1, 2, 3], "value": [3, 4, 5, 1, 7]}
    assert str(c["printing"].dtype) == "int64" and str(c["t_s"].dtype) == "float64"
    assert to_frames(out)["@h"].columns.tolist() == ["lo", "hi", "count"]  # printed once
    assert out.counts() == {"maps": 2, "printings": 4, "entries": 6, "lines": 1,
                            "warnings": 0, "unparsed": 0}


def test_time_lines_stamp_printings_without_line_times() -> None:
    text = ("Attaching 1 probe...\n23:59:59\n@n: 1\n00:00:01\n@n: 2\n00:00:02\n@n: 3\n")
    out = parse_text(text)
    assert [m.t_s for m in out.maps] == [0.0, 2.0, 3.0]  # across midnight
    assert out.lines == ["23:59:59", "00:00:01", "00:00:02"]  # still printed lines
    js = parse_json("\n".join([
        '{"type": "time", "data": "10:00:00\\n"}', '{"type": "map", "data": {"@n": 1}}',
        '{"type": "time", "data": "10:00:05\\n"}', '{"type": "map", "data": {"@n": 2}}']))
    assert [m.t_s for m in js.maps] == [0.0, 5.0]
    assert to_frames(js)["@n"]["t_s"].tolist() == [0.0, 5.0]
    # a scalar map prints one line a printing: its second line is a second print()
    assert [m.t_s for m in parse_text("@n: 1\n@n: 2\n").maps] == [None, None]


def test_entry_runs_read_in_chunks_equal_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The column-wise reading of entry runs (chunks, arrival-time breaks starting printings)
    gives the same printings as reading line by line, wherever a chunk happens to end."""
    from harness.output import parse

    text = ("Attaching 1 probe...\n"
            + "".join(f"@c[{k}]: {p * k}\n" for p in range(6) for k in range(7))  # 6 printings
            + "@c[9]: 1\n@c[0]: 2\n@c[10]: 3\n"   # a new key, then an int key again: cut
            + "@s[a]: x\n@s[b]: y\n@s[a]: z\n"     # string values
            + "@n: 5\n@n: 6\n@m[1]: 1\n@m[x]: 2\n"  # scalar printed twice; int and str keys
            + "@i[1]: 7\n@i[2]: v\n@i[007]: 3\n")   # int and str values; a leading zero
    # the six print(@c)s arrive a second apart; @n's second print() half a second later
    times = [0.0] + [float(p) for p in range(6) for _ in range(7)] + [5.0] * 6 + [5.5, 6.0] + [
        6.0] * 5
    assert len(times) == text.count("\n")
    want = parse_text(text, line_times=times)
    for chunk in (1, 8, 20, 64, 200):
        monkeypatch.setattr(parse, "_RUN_CHUNK", chunk)
        monkeypatch.setattr(parse._Builder, "_add_segment_fast", lambda *a: False)
        slow = parse_text(text, line_times=times)
        monkeypatch.undo()
        monkeypatch.setattr(parse, "_RUN_CHUNK", chunk)
        fast = parse_text(text, line_times=times)
        monkeypatch.undo()
        for got in (slow, fast):
            assert [(m.name, m.printing, m.kind, m.packed_keys, m.values, m.line)
                    for m in got.maps] == [(m.name, m.printing, m.kind, m.packed_keys, m.values,
                                            m.line) for m in want.maps], chunk
    # @c[9] goes on the 6th printing; @c[0] again (an int key) starts a 7th
    assert [len(m) for m in want.maps if m.name == "@c"] == [7] * 5 + [8, 2]
    assert [m.values for m in want.maps if m.name == "@n"] == [[5], [6]]
    assert [len(m) for m in want.maps if m.name == "@s"] == [3]


def test_a_pause_inside_one_printing_is_no_boundary() -> None:
    """bpftrace pauses inside a printing (resolving symbols, descheduled): a gap in arrival
    cuts only where the line after it repeats a key, in a map the program print()s."""
    text = ("Attaching 2 probes...\n@[\n    f+1\n]: 5\n@[]: 3\n@[\n    g+2\n]: 2\n@[]: 7\n"
            "@n: 4\n@n: 5\n")
    times = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    assert len(times) == text.count("\n")
    # `@[]` again after a 1 s pause while `g+2` was read: @ is never print()ed, one printing
    prog = "profile:hz:99 { @[kstack] = count(); @n = count(); } interval:s:1 { print(@n); }"
    out = parse_text(text, line_times=times, program=prog)
    assert [(m.name, len(m)) for m in out.maps] == [("@", 4), ("@n", 1), ("@n", 1)]
    # a new key after the pause (`g+2`): no boundary, even without the program (`@n` prints
    # one line a printing: its second line is the second print(), pause or not)
    new_key = parse_text(text, line_times=[0.0] * 5 + [1.0] * 6)
    assert [(m.name, len(m)) for m in new_key.maps] == [("@", 4), ("@n", 1), ("@n", 1)]
    # without the program, a repeated key after the pause is taken for a second print()
    blind = parse_text(text, line_times=[0.0] * 8 + [1.0, 1.0, 3.0])
    assert [(m.name, len(m)) for m in blind.maps] == [("@", 3), ("@", 1), ("@n", 1), ("@n", 1)]


def test_repeated_keys_are_rows_of_one_printing() -> None:
    # bpftrace 0.17, profile with @[kstack, comm]: an empty kernel stack and one it failed to
    # look up both print as nothing, so `@[, tar]` can appear twice in one printing.
    text = ("@[\n    do_syscall_64+113\n    entry_SYSCALL_64_after_hwframe+118\n, tar]: 1\n"
            "@[, tar]: 1\n@[, sed]: 2\n@[, tar]: 11\n")
    out = parse_text(text)
    assert [len(m) for m in out.maps] == [4] and out.warnings == []
    assert to_frames(out)["@"]["value"].sum() == 15  # rows kept, nothing merged
    # the issue's own shape: `@[]` twice among stacks, after the exit dump's blank lines
    rep = parse_text("Attaching 1 probe...\n\n\n@[\n    read_zero+38\n    vfs_read+150\n]: 5\n"
                     "@[]: 3\n@[\n    write+1\n]: 2\n@[]: 7\n\n")
    assert [(m.printing, m.values) for m in rep.maps] == [(1, [5, 3, 2, 7])]
    assert rep.warnings == []


def test_boundaries_bpftrace_writes() -> None:
    # 0.17: a stats map ends in a blank line, an empty print() is a blank line, hist and
    # stack-value entries end in one each, the exit dump starts with two
    bucket = "[4, 8)                 1 |" + "@" * 52 + "|\n\n"
    text = ("Attaching 1 probe...\n@st[1]: count 1, average 4, total 4\n\n"
            "@st[1]: count 2, average 4, total 8\n\n"
            f"@h[1]: \n{bucket}@h[2]: \n{bucket}\n@h[1]: \n{bucket}"
            "@v[1]: \n        f+1\n\n@v[2]: \n        g+2\n\n\n\n@v[1]: \n        f+1\n\n")
    out = parse_text(text)
    assert [(m.name, m.printing, len(m)) for m in out.maps] == [
        ("@st", 1, 1), ("@st", 2, 1), ("@h", 1, 2), ("@h", 2, 1), ("@v", 1, 2), ("@v", 2, 1)]


def test_a_map_printed_mid_line_is_a_printing() -> None:
    # pidpersec.bt: time("%H:%M:%S "); print(@); clear(@);  (0.17 prints an empty map as the
    # stamp alone; 0.27 prints nothing)
    text = ("Attaching 2 probes...\n10:00:01 @[1]: 5\n@[2]: 3\n10:00:02 @[3]: 4\n10:00:03 \n"
            "10:00:04 @k[\n    f+1\n]: 2\nhello: @x[1]: 3 (printf)\n\n\n@[1]: 2\n")
    out = parse_text(text)
    assert [(m.name, m.printing, m.packed_keys, m.values, m.t_s) for m in out.maps] == [
        ("@", 1, [1, 2], [5, 3], 0.0), ("@", 2, [3], [4], 1.0),
        ("@k", 1, [Stack(["f+1"])], [2], 3.0), ("@", 3, [1], [2], 3.0)]
    assert out.lines == ["10:00:01 ", "10:00:02 ", "10:00:03 ", "10:00:04 ",
                         "hello: @x[1]: 3 (printf)"]
    assert out.warnings == [] and out.unparsed == []


def test_json_object_with_a_repeated_key_keeps_every_pair() -> None:
    # bpftrace writes one pair per entry: `@[]` twice (an empty and a failed kernel stack);
    # json.loads alone keeps the last pair only
    text = ('{"type": "attached_probes", "data": {"probes": 1}}\n'
            '{"type": "map", "data": {"@": {"": 3, "\\nread_zero+38\\n": 5, "": 7}}}\n'
            '{"type": "map", "data": {"@c": {"a,": 1, "a,": 2}}}\n'
            '{"type": "stats", "data": {"@s": {"1": {"count": 2, "average": 3, "total": 6},'
            ' "1": {"count": 1, "average": 1, "total": 1}}}}\n')
    out = parse_json(text)
    assert [(m.name, m.printing, m.values) for m in out.maps] == [
        ("@", 1, [3, 5, 7]), ("@c", 1, [1, 2]), ("@s", 1, [Stats(2, 3, 6), Stats(1, 1, 1)])]
    assert to_frames(out)["@"]["value"].sum() == 15

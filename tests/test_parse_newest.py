"""Hand-written output in the newest layouts (0.23 release and upstream main's json changes).

The real 0.23.2 runs live in tests/data/corpus_0.23; these pin the details one by one.
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.output.frames import to_frames
from harness.output.model import Bucket, Stack
from harness.output.parse import ParseError, parse_json, parse_text

NEW_TEXT = """Attaching 2 probes...
tick
@len:
[32, 64)               4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[64, 128)              0 |                                                    |
[128, 256)             4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@by_len[1]:
[4K, 8K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@stacks[
        __dev_queue_xmit+1158
        ip_finish_output2+705
        udp_send_skb+423
, python,~
        syscall+25
        0
]: 12
@empty[e]:~
@st: count 2, average 3, total 6

""".replace("~", " ")  # bpftrace's trailing blanks, kept visible for linters


def test_newest_text_layout() -> None:
    out = parse_text(NEW_TEXT)
    assert out.probes == 2 and out.lines == ["tick"]
    f = to_frames(out)
    assert f["@len"][["lo", "hi", "count"]].values.tolist() == [[32, 64, 4], [64, 128, 0],
                                                               [128, 256, 4]]
    assert f["@by_len"].values.tolist() == [[1, 4096, 8192, 1]]
    row = f["@stacks"].iloc[0]
    assert row["key0"] == ("__dev_queue_xmit+1158", "ip_finish_output2+705", "udp_send_skb+423")
    assert isinstance(row["key0"], Stack)
    assert row["key1"] == "python" and row["key2"] == ("syscall+25", "0") and row["value"] == 12
    assert f["@empty"]["value"].tolist() == [""]
    assert f["@st"][["count", "average", "total"]].values.tolist() == [[2, 3, 6]]


def test_newest_json_shapes() -> None:
    # upstream main: attached_probes/lost_events carry `count` instead of `data`, ints that a
    # double cannot hold arrive as strings, hist open ends leave out min or max.
    text = "\n".join([
        '{"type":"attached_probes", "count":3}',
        '{"type": "printf", "data": "tick\\n"}',
        '{"type":"lost_events", "count":7}',
        '{"type": "map", "data": {"@big": {"1": "18446744073709551615", "2": 5}}}',
        '{"type": "hist", "data": {"@lh": [{"max": -1, "count": 2}, {"min": 0, "max": 9, '
        '"count": 1}, {"min": 10, "count": 4}]}}',
    ])
    out = parse_json(text)
    assert out.probes == 3 and out.lines == ["tick"]
    assert out.warnings == ['line 3: {"type":"lost_events", "count":7}']
    big = next(m for m in out.maps if m.name == "@big")
    assert big.values == [18446744073709551615, 5]
    lh = next(m for m in out.maps if m.name == "@lh")
    assert lh.kind == "lhist"
    assert lh.values[0] == [Bucket(None, 0, 2), Bucket(0, 10, 1), Bucket(10, None, 4)]
    assert pd.isna(to_frames(out)["@lh"]["hi"].iloc[-1])


def test_json_023_double_escaped_stack_key() -> None:
    # bpftrace 0.23.2 escapes keys twice: the stack arrives as literal backslash-n text
    line = ('{"type": "map", "data": {"@s": {"\\\\n        udp_send_skb+1\\\\n'
            '        ip_send_skb+2\\\\n,python": 3}}}')
    f = to_frames(parse_json(line))["@s"]
    assert f.values.tolist() == [[("udp_send_skb+1", "ip_send_skb+2"), "python", 3]]


def test_mixed_value_kinds_in_one_printing_is_an_error() -> None:
    text = ('{"type": "map", "data": {"@m": {"a": 1}}}\n'
            '{"type": "stats", "data": {"@m": {"b": {"count": 1, "average": 1, "total": 1}}}}\n')
    assert len(parse_json(text).maps) == 2  # two printings: fine
    with pytest.raises(ParseError, match="mixes value kinds"):
        parse_text("@m[a]: 1\n@m[b]: count 1, average 1, total 1\n")

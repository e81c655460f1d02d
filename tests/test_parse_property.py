"""Property: maps rendered in bpftrace's text format (0.17 and 0.23 layouts) parse back."""

from __future__ import annotations

import re

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.output.frames import all_printings, map_frame, printings_frame, to_frames
from harness.output.model import Bucket, MapPrint, Stack, Stats, pack_key
from harness.output.parse import parse_text

UNITS = ["", "K", "M", "G", "T", "P", "E"]
ODD = " ,[]:\"'{}()#/=-_."
INT = re.compile(r"-?\d+\Z")

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
frames = st.from_regex(r"[a-z_][a-z0-9_.]{0,20}\+[0-9]{1,5}", fullmatch=True)
stacks = st.lists(frames, min_size=1, max_size=6).map(Stack)


def _text(extra: str) -> st.SearchStrategy[str]:
    alphabet = st.characters(min_codepoint=0x21, max_codepoint=0x7E) | st.sampled_from(ODD)
    return st.text(alphabet, min_size=1, max_size=24).filter(
        lambda s: not INT.match(s) and s == s.strip() and ", " not in s and "]: " not in s
        and not s.endswith(",") and not s.startswith("\n") and extra not in s)


def _label(v: int) -> str:
    """A hist label as bpftrace prints it: exact multiples of 1024^k get a suffix."""
    i = 0
    while v != 0 and v % 1024 == 0 and i < len(UNITS) - 1:
        v //= 1024
        i += 1
    return f"{v}{UNITS[i]}"


@st.composite
def hist_buckets(draw: st.DrawFn) -> list[Bucket]:
    bounds = [0, 1] + [2**i for i in range(1, 40)]
    start = draw(st.integers(0, len(bounds) - 2))
    n = draw(st.integers(1, min(8, len(bounds) - 1 - start)))
    out = []
    if draw(st.booleans()):
        out.append(Bucket(None, 0, draw(st.integers(0, 10**6))))
        start = 0
    for i in range(start, start + n):
        lo, hi = bounds[i], bounds[i + 1]
        out.append(Bucket(lo, hi if lo > 0 else 1, draw(st.integers(0, 10**6))))
    return out


@st.composite
def lhist_buckets(draw: st.DrawFn) -> list[Bucket]:
    lo = draw(st.integers(-50, 50))
    step = draw(st.integers(2, 25))
    n = draw(st.integers(1, 6))
    out = [Bucket(None, lo, draw(st.integers(0, 99)))]
    out += [Bucket(lo + i * step, lo + (i + 1) * step, draw(st.integers(0, 99)))
            for i in range(n)]
    out.append(Bucket(lo + n * step, None, draw(st.integers(0, 99))))
    return out


@st.composite
def map_prints(draw: st.DrawFn, name: str) -> MapPrint:
    kind = draw(st.sampled_from(["int", "str", "stats", "hist", "lhist"]))
    shape = draw(st.lists(st.sampled_from(["int", "str", "stack"]), min_size=0, max_size=3))
    if kind == "str" and not shape:
        shape = ["str"]
    n_keys = 1 if not shape else draw(st.integers(1, 5))
    keys = []
    for _ in range(n_keys):
        parts = []
        for p in shape:
            parts.append(draw(ints) if p == "int" else draw(stacks) if p == "stack"
                         else draw(_text("\n")))
        keys.append(tuple(parts))
    keys = list(dict.fromkeys(keys))
    value = {
        "int": ints, "str": _text("\n"),
        "stats": st.builds(Stats, st.integers(0, 2**40), ints, ints),
        "hist": hist_buckets(), "lhist": lhist_buckets(),
    }[kind]
    mp = MapPrint(name, 1, kind)
    for k in keys:
        mp.packed_keys.append(pack_key(k))
        mp.values.append(draw(value))
    return mp


def _key_text(key: tuple) -> str:
    out = []
    for part in key:
        if isinstance(part, tuple):
            out.append("\n" + "".join(f"    {f}\n" for f in part))
        else:
            out.append(str(part))
    return ", ".join(out)


def render(mp: MapPrint, new_layout: bool) -> str:
    """One map printing laid out as bpftrace 0.17 (or 0.23 with new_layout) prints it."""
    lines = []
    colon = ":" if new_layout else ": "
    for key, value in zip(mp.keys, mp.values, strict=True):
        head = f"{mp.name}[{_key_text(key)}]" if key else mp.name
        if mp.kind in ("hist", "lhist"):
            lines.append(f"{head}{colon}\n")
            top = max(b.count for b in value) or 1
            for b in value:
                if b.lo is None:
                    label = f"(..., {_label(b.hi)})"
                elif b.hi is None:
                    label = f"[{_label(b.lo)}, ...)"
                elif b.hi == b.lo + 1 and mp.kind == "hist":
                    label = f"[{_label(b.lo)}]"
                else:
                    label = f"[{_label(b.lo)}, {_label(b.hi)})"
                bar = "@" * (b.count * 52 // top)
                lines.append(f"{label:<16}{b.count:>8} |{bar:<52}|\n")
            lines.append("\n")
        elif mp.kind == "stats":
            lines.append(f"{head}: count {value.count}, average {value.average}, "
                         f"total {value.total}\n")
        else:
            lines.append(f"{head}: {value}\n")
    return "".join(lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), new_layout=st.booleans(),
       names=st.lists(st.from_regex(r"@[a-z_]{0,8}", fullmatch=True), min_size=1,
                      max_size=4, unique=True))
def test_rendered_maps_parse_back_to_the_same_frames(data: st.DataObject, new_layout: bool,
                                                     names: list[str]) -> None:
    maps = [data.draw(map_prints(n)) for n in names]
    # printf text; " @" would be a map printed mid-line after it (time(); print(@x))
    printf = data.draw(st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9 :=,@\[\]]{0,30}",
                                              fullmatch=True).filter(lambda t: " @" not in t),
                                max_size=len(maps)))
    repeats = data.draw(st.lists(st.integers(1, 3), min_size=len(maps), max_size=len(maps)))
    text = "Attaching 3 probes...\n"
    times = [0.0]
    for i, mp in enumerate(maps):
        if i < len(printf):
            text += printf[i] + "\n"
            times.append(times[-1])
        for _ in range(repeats[i]):  # print(@x) repeated, nothing between: arrival times cut
            printed = render(mp, new_layout)
            text += printed
            times += [times[-1] + 1.0] * printed.count("\n")
    out = parse_text(text, line_times=times)
    assert out.probes == 3
    assert out.lines == [p for p in printf[: len(maps)]]
    key_names = {mp.name: [f"key{i}" for i in range(len(mp.keys[0]))] for mp in maps}
    got = to_frames(out, key_names)
    assert list(got) == names
    for mp, n in zip(maps, repeats, strict=True):
        copies = [MapPrint(mp.name, i, mp.kind, mp.packed_keys, mp.values) for i in range(1, n + 1)]
        want = (map_frame(mp, key_names[mp.name]) if n == 1
                else printings_frame(copies, key_names[mp.name]))
        # t_s: the arrival times given above (a printing's first line), not compared here
        pd.testing.assert_frame_equal(got[mp.name].drop(columns="t_s", errors="ignore"),
                                      want.drop(columns="t_s", errors="ignore"), obj=mp.name)
        printings = all_printings(out, mp.name)
        assert [p.printing for p in printings] == list(range(1, repeats[maps.index(mp)] + 1))
        parsed = printings[-1]
        if mp.kind in ("hist", "lhist"):
            assert parsed.kind in ("hist", "lhist")
        else:
            assert parsed.kind == mp.kind or (mp.kind == "str" and parsed.kind == "int")

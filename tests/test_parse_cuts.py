"""Cut real outputs anywhere: each cut parses or raises ParseError naming a line, never a
traceback, never a lost row before the cut, and the parse work grows linearly with the input.

Work is the text lexer's deterministic count of bytes its regexes were given
(`harness.output.parse.lexer_work`), not wall-clock time. The old grammar backtracked
exponentially on a stack key that never closed (4x per frame at 4-space indent, 8x at 8):
the 127-frame cases below would not finish on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness.output.model import Output
from harness.output.parse import ParseError, lexer_work, parse_text

DATA = Path(__file__).resolve().parent / "data"
OUTPUTS = sorted((DATA / "corpus").glob("*/stdout.txt")) + sorted(
    (DATA / "corpus_0.23").glob("*/stdout.txt"))
WORK_PER_BYTE = 8  # the lexer gives each regex at most a few passes over a line


def _parse(text: str) -> Output | ParseError:
    try:
        return parse_text(text)
    except ParseError as err:
        return err


def _rows(out: Output, upto: int) -> list[tuple]:
    return [(m.name, m.printing, m.kind, m.packed_keys, m.values) for m in out.maps[:upto]]


def _check_cut(text: str, cut: int, full: Output, label: str) -> None:
    """The prefix text[:cut] parses to the same complete printings as the whole file, or
    raises a ParseError naming a line inside the prefix."""
    prefix = text[:cut]
    got = _parse(prefix)
    lines_in_prefix = prefix.count("\n") + (0 if prefix.endswith("\n") else 1)
    if isinstance(got, ParseError):
        assert 1 <= got.line <= lines_in_prefix, f"{label}: {got}"
        assert f"line {got.line}" in str(got) and "\n" not in str(got), f"{label}: {got}"
        return
    # a printing is complete in the prefix when the next printing starts inside it
    whole_lines = prefix.count("\n")
    starts = [m.line for m in full.maps]
    complete = sum(1 for i in range(len(starts))
                   if i + 1 < len(starts) and starts[i + 1] <= whole_lines)
    assert _rows(got, complete) == _rows(full, complete), f"{label}: rows lost before the cut"
    assert got.counts()["entries"] >= sum(len(m) for m in full.maps[:complete]), label
    assert lexer_work(prefix) <= WORK_PER_BYTE * max(len(prefix), 1), label


@pytest.mark.parametrize("path", OUTPUTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_line_cut_parses_or_names_its_line(path: Path) -> None:
    text = path.read_text()
    full = parse_text(text)
    ends = [i + 1 for i, c in enumerate(text) if c == "\n"]
    for cut in [0, *ends]:
        _check_cut(text, cut, full, f"{path.parent.name} cut at byte {cut}")


@pytest.mark.parametrize("path", OUTPUTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_byte_cuts_parse_or_name_their_line(path: Path) -> None:
    text = path.read_text()
    full = parse_text(text)
    step = max(1, len(text) // 400)  # ~400 cuts per file, at every residue over the files
    for cut in range(len(path.parent.name) % step, len(text), step):
        _check_cut(text, cut, full, f"{path.parent.name} cut at byte {cut}")


def _stack_text(frames: list[str], n: int, indent: str, closed: bool, new_layout: bool) -> str:
    body = "".join(f"{indent}{frames[i % len(frames)]}\n" for i in range(n))
    colon = ":" if new_layout else ": "
    close = f"]{colon}5\n" if closed else ""
    return f"Attaching 1 probe...\n@x[1]{colon}3\n@stacks[\n{body}{close}@y: 1\n"[
        : None if closed else -len("@y: 1\n")]


REAL_FRAMES = [line.strip() for line in (DATA / "corpus" / "udp_kstack" / "stdout.txt")
               .read_text().splitlines() if line.startswith("    ") and "+" in line]


@pytest.mark.parametrize("indent", ["    ", "        ", "\t"])
@pytest.mark.parametrize("new_layout", [False, True])
def test_unclosed_stack_key_is_linear_and_named(indent: str, new_layout: bool) -> None:
    works = {}
    for n in range(1, 128):
        text = _stack_text(REAL_FRAMES, n, indent, closed=False, new_layout=new_layout)
        with pytest.raises(ParseError, match="line 3") as info:
            parse_text(text)
        assert info.value.text == "@stacks["
        works[n] = lexer_work(text)
        assert works[n] <= WORK_PER_BYTE * len(text)
    for n in (8, 16, 32, 63):  # doubling the frames about doubles the work, never 4x or 8x
        assert works[2 * n] / works[n] < 2.2, (n, works[n], works[2 * n])


@pytest.mark.parametrize("indent", ["    ", "        "])
def test_closed_stack_keys_of_1_to_127_frames_parse(indent: str) -> None:
    for n in range(1, 128):
        text = _stack_text(REAL_FRAMES, n, indent, closed=True, new_layout=False)
        out = parse_text(text)
        stacks = next(m for m in out.maps if m.name == "@stacks")
        assert len(stacks.packed_keys[0]) == n and stacks.values == [5]
        assert lexer_work(text) <= WORK_PER_BYTE * len(text)


def test_work_grows_linearly_with_a_long_run_and_many_printings() -> None:
    def interval(printings: int) -> str:
        return "".join(f"tick {p}\n" + "".join(f"@c[{k}]: {p * k}\n" for k in range(100))
                       for p in range(printings))
    small, large = lexer_work(interval(50)), lexer_work(interval(100))
    assert 1.8 < large / small < 2.2
    assert len(parse_text(interval(100)).maps) == 100


# --- a cut inside a line: never a wrong value -------------------------------------------------
# bpftrace ends every line with a newline, so text that stops inside a line was cut off there
# (a run killed mid-write, a file copied half-way): the last line is incomplete, and `total 4908`
# cut to `total 49` must not be read as 49. Each cut below parses to entries the uncut output
# also has, with equal values, and a warning names the cut line.
ALL_OUTPUTS = OUTPUTS + sorted((DATA / "corpus_0.27").glob("*/stdout.txt"))


def _entries(out: Output) -> dict[tuple, Any]:
    return {(m.name, m.printing, k): v for m in out.maps
            for k, v in zip(m.packed_keys, m.values, strict=True)}


def _same(got: Any, want: Any) -> bool:
    """Equal values; an int and the string of it are equal too (a map whose string values
    all look like ints before the cut is read as an int map: a limit of the text format)."""
    return got == want or (isinstance(got, int | str) and isinstance(want, int | str)
                           and str(got) == str(want))


def mid_line_cuts(text: str) -> list[int]:
    """Every cut inside a number (after each digit but the last of each run of digits) and
    every cut just before a newline (a whole line that lost only its newline)."""
    inside = [m.start() + i for m in re.finditer(r"\d{2,}", text)
              for i in range(1, len(m.group()))]
    return sorted({*inside, *(i for i, c in enumerate(text)
                              if c == "\n" and i > 0 and text[i - 1] != "\n")})


def wrong_values(text: str, cut: int, full: Output) -> list[str]:
    """What the parse of text[:cut] reads that the uncut parse does not (empty: all right)."""
    prefix = text[:cut]
    last_line = prefix.count("\n") + 1
    try:
        got = parse_text(prefix)
    except ParseError as err:  # e.g. a stack key never closed: an error naming its line
        return [] if 1 <= err.line <= last_line else [f"error names line {err.line}: {err}"]
    want = _entries(full)
    wrong = [f"{e}: {v!r}, uncut {want.get(e, 'absent')!r}" for e, v in _entries(got).items()
             if e not in want or not _same(v, want[e])]
    if not any(w.startswith(f"line {last_line}: ") for w in got.warnings):
        wrong.append(f"no warning names the cut line {last_line}: {got.warnings}")
    return wrong


@pytest.mark.parametrize("path", ALL_OUTPUTS,
                         ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_a_cut_inside_a_line_reads_no_wrong_value(path: Path) -> None:
    text = path.read_text()
    full = parse_text(text)
    cuts = mid_line_cuts(text)
    assert cuts, "a corpus output without numbers tests nothing here"
    bad = {cut: w for cut in cuts if (w := wrong_values(text, cut, full))}
    assert not bad, f"{len(bad)} of {len(cuts)} cuts: " + "; ".join(
        f"byte {c} ({text[:c].rsplit(chr(10), 1)[-1]!r}): {w[0]}" for c, w in
        list(bad.items())[:5])


@pytest.mark.parametrize(("whole", "cut", "shape"), [
    ("@s: count 2, average 3, total 4908", -2, "a stats total cut from 4908 to 49"),
    ("@s: count 2, average 3, total 4908", -8, "a stats line cut before its total"),
    ("@c[tcp]: 4908", -2, "an int cut from 4908 to 49"),
    ("@c[tcp]: 4908", 0, "an int that lost only its newline"),
    ("@h[1]:\n[4, 8)   3 |@@@@ |\n[8, 16)   12 |@@   |", -8, "a hist bucket cut in its count"),
    ("@b[x]:\n    f+1\n    g+12", -1, "a stack value cut in a frame"),
    ("@t[x]: first\nsecond", -2, "a string value cut on its second line"),
    ("@k[\n    f+1\n    g+12\n]: 5", -6, "a stack key cut in a frame"),
    ("@k[\n    f+1\n    g+12\n, 140]: 5", -5, "a tuple's stack key cut on its closing line"),
])
def test_the_cut_entry_is_named_and_the_rest_kept(whole: str, cut: int, shape: str) -> None:
    head = "Attaching 1 probe...\n@c[udp]: 12\n@c[icmp]: 3\n\n"
    text = head + (whole[:cut] if cut else whole)
    out = parse_text(text)
    last = text.count("\n") + 1
    assert [(m.name, m.values) for m in out.maps if len(m)] == [("@c", [12, 3])], shape
    assert out.unparsed[-1] == last, shape
    assert out.warnings[-1].startswith(f"line {last}: incomplete: "), shape
    assert parse_text(head + whole + "\n").counts()["entries"] == 3, shape  # whole: read

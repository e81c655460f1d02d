"""The text parser's fast path against its grammar path (issue 22).

parse_text reads a run of entry lines as one ENTRY_RUN token, column-wise; parse_text_by_lines
gives every entry line its own ENTRY token, reduced by the grammar and read line by line. Over
the real corpus (0.17, 0.23, 0.27 runs) and the seeded generators of 0.17/0.23/0.27 text, both
must give the same Output: maps, printed lines, warnings, unparsed line numbers, probes.
The line shapes both use come from grammar/bpftrace_output.lark alone.
"""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parse_property import map_prints, render
from test_printings import runs

from harness.output import parse as parse_module
from harness.output.model import Output
from harness.output.parse import parse_text, parse_text_by_lines

DATA = Path(__file__).resolve().parent / "data"
TEXTS = sorted([*DATA.glob("corpus*/*/stdout.txt"), *DATA.glob("samples/*.txt")])


def _same(text: str, **kw: object) -> Output:
    fast = parse_text(text, **kw)  # type: ignore[arg-type]
    slow = parse_text_by_lines(text, **kw)  # type: ignore[arg-type]
    assert fast.maps == slow.maps
    assert (fast.lines, fast.warnings, fast.unparsed, fast.probes) == (
        slow.lines, slow.warnings, slow.unparsed, slow.probes)
    return fast


def _program(path: Path) -> str | None:
    for name in ("program.bt", path.name.replace(".txt", ".bt")):
        if (path.parent / name).exists():
            return (path.parent / name).read_text()
    return None


def test_the_corpus_is_there() -> None:
    assert len(TEXTS) >= 25, TEXTS


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}"
                         if p.name == "stdout.txt" else p.name)
def test_fast_and_grammar_paths_agree_on_the_corpus(path: Path) -> None:
    text = path.read_text()
    out = _same(text)
    assert out.maps, path  # every corpus run prints maps
    program = _program(path)
    if program is not None:
        _same(text, program=program)
    # cut off inside its last entry line: the cut entry is said, not read, by both paths
    last = text.rstrip("\n").rfind("\n")
    _same(text[: last + 1 + max(1, (len(text) - last) // 2)])


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_fast_and_grammar_paths_agree_on_generated_printings(run: tuple) -> None:
    """test_printings' seeded generator: 0.17 and 0.27 layouts, line times, repeated keys."""
    text, times, _, _ = run
    _same(text, line_times=times)
    _same(text)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), new_layout=st.booleans(), names=st.lists(
    st.sampled_from(["@", "@a", "@b_2"]), min_size=1, max_size=3, unique=True))
def test_fast_and_grammar_paths_agree_on_generated_maps(data: st.DataObject, new_layout: bool,
                                                        names: list[str]) -> None:
    """test_parse_property's generator: every value kind, odd string keys and values."""
    text = "Attaching 1 probe...\n\n\n" + "".join(
        render(data.draw(map_prints(name)), new_layout) + "\n" for name in names)
    _same(text)


def test_the_fast_path_reads_a_run_without_the_line_by_line_reader(monkeypatch) -> None:
    """The fast path is taken: 1,000 entry lines reach the line-by-line reader only on the
    grammar path (one call per line), never on the fast path."""
    text = "".join(f"@m[{i}]: {i * 3}\n" for i in range(1000))
    calls: list[int] = []
    reader = parse_module._Builder.add_lines

    def counted(self: object, run: str, line: int) -> None:
        calls.append(line)
        reader(self, run, line)  # type: ignore[arg-type]

    monkeypatch.setattr(parse_module._Builder, "add_lines", counted)
    fast = parse_text(text)
    assert calls == []
    slow = parse_text_by_lines(text)
    assert calls == list(range(1, 1001))
    assert fast.maps == slow.maps and fast.maps[0].values[999] == 2997


def test_line_shapes_are_defined_only_in_the_grammar() -> None:
    """parse.py compiles no text line shape of its own: each is read from the .lark file (its
    own regexes type values and read -f json)."""
    grammar = resources.files("harness.grammar").joinpath(parse_module.GRAMMAR_FILE).read_text()
    for terminal in ("ATTACHED", "STATS_LINE", "STATS_VALUE", "ENTRY", "HEAD", "BUCKET",
                     "KEY_OPEN", "CLOSE_HEAD", "CLOSE_VALUE", "JOIN_END", "MAP_START", "CLOCK"):
        assert re.search(rf"^{terminal}: ", grammar, re.M), terminal
    tree = ast.parse(Path(parse_module.__file__).read_text())
    literals = [node.value for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str)
                and not (node.value.startswith(("\n", " ")) or len(node.value) > 200)]
    regexes = [lit for lit in literals if "\\" in lit or "(?" in lit]
    assert regexes, "the check looks at the module's regex literals"
    for shape in ("Attach", "count", "KMGTPE", "@\\w", "\\]:", "\\d{2}:"):
        assert not [r for r in regexes if shape in r], shape

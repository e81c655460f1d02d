"""Printings and totals (issue 18) against an independent reading: a seeded generator writes
bpftrace text the way 0.17 and 0.27 print it (repeated keys, empty and failed stacks, tuple
keys mixing stacks and strings, stats and hist maps, printings separated only by what bpftrace
writes or by when lines arrived), keeping its own count of every printing's entries and total;
the parse, its frames, tables, CSVs, .folded files and flame pages must give the same counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.output.columns import to_tables
from harness.output.frames import to_frames
from harness.output.parse import parse_text
from harness.output.printed import check_frames, differences, measure, printed
from harness.report.rundir import write_run_dir
from harness.report.summary import write_report
from harness.report.totals import check_run_dir

FRAME = st.from_regex(r"[a-z_][a-z0-9_]{0,12}\+[0-9]{1,4}", fullmatch=True)
# a stack: frames, or nothing (an empty stack and a failed lookup both print as nothing)
STACK = st.one_of(st.just(()), st.lists(FRAME, min_size=1, max_size=4).map(tuple))
COMM = st.sampled_from(["tar", "sed", "python3", "dd"])
SHAPES = ["stack", "comm,stack", "stack,comm", "stack,stack", "stack,int"]


@dataclass
class Printing:
    """One printing as the generator made it: entries (key parts, value) in print order."""

    entries: list[tuple[tuple[object, ...], object]]
    kind: str  # int | stats | hist


@dataclass
class Gen:
    name: str
    kind: str
    shape: str
    printings: list[Printing] = field(default_factory=list)


@st.composite
def keys(draw: st.DrawFn, shape: str) -> tuple[object, ...]:
    parts: list[object] = []
    for p in shape.split(","):
        parts.append(draw(STACK) if p == "stack" else draw(COMM) if p == "comm"
                     else draw(st.integers(0, 99)))
    return tuple(parts)


@st.composite
def printing(draw: st.DrawFn, kind: str, shape: str) -> Printing:
    pool = draw(st.lists(keys(shape), min_size=1, max_size=4))
    # keys drawn from a small pool: the same key often comes twice in one printing
    chosen = draw(st.lists(st.sampled_from(pool), min_size=0, max_size=7))
    value: st.SearchStrategy[object] = {
        "int": st.integers(1, 10**6),
        "stats": st.tuples(st.integers(1, 1000), st.integers(0, 50)),
        "hist": st.lists(st.integers(0, 500), min_size=1, max_size=5),
    }[kind]
    return Printing([(k, draw(value)) for k in chosen], kind)


def _key_text(key: tuple[object, ...]) -> str:
    out = []
    for part in key:
        if isinstance(part, tuple):  # a stack; an empty one prints as nothing
            out.append("".join(f"\n    {f}" for f in part) + ("\n" if part else ""))
        else:
            out.append(str(part))
    return ", ".join(out)


def render(g: Gen, p: Printing, version: str) -> list[str]:
    """The lines bpftrace `version` prints for one print() of the map (each ends in \\n)."""
    lines: list[str] = []
    for key, value in p.entries:
        head = f"{g.name}[{_key_text(key)}]"
        if p.kind == "int":
            lines.append(f"{head}: {value}\n")
        elif p.kind == "stats":
            count, avg = value  # type: ignore[misc]
            lines.append(f"{head}: count {count}, average {avg}, total {count * avg}\n"
                         if version == "0.17" else
                         f"{head}: {{ .count = {count}, .average = {avg}, "
                         f".total = {count * avg} }}\n")
        else:
            lines.append(f"{head}:{' ' if version == '0.17' else ''}\n")
            for i, c in enumerate(value):  # type: ignore[arg-type]
                lo, hi = 1 << (i + 2), 1 << (i + 3)
                lines.append(f"[{lo}, {hi}){c:>16} |{'@' * (c * 52 // 500):<52}|\n")
            lines.append("\n")  # after every hist entry
    if version == "0.17" and (not p.entries or p.kind == "stats"):
        lines.append("\n")  # 0.17 ends a stats map with a blank line; an empty map is one
    # the text cuts a stack key's lines; join them back into whole lines
    return "".join(lines).splitlines(keepends=True)


def expected(g: Gen, p: Printing) -> tuple[int, int]:
    if p.kind == "int":
        return len(p.entries), sum(v for _, v in p.entries)  # type: ignore[misc]
    if p.kind == "stats":
        return len(p.entries), sum(v[0] for _, v in p.entries)  # type: ignore[index]
    return len(p.entries), sum(sum(v) for _, v in p.entries)  # type: ignore[arg-type]


@st.composite
def runs(draw: st.DrawFn) -> tuple[str, list[float], list[Gen], str]:
    version = draw(st.sampled_from(["0.17", "0.27"]))
    names = draw(st.lists(st.sampled_from(["@", "@a", "@by_comm", "@h", "@s"]), min_size=1,
                          max_size=3, unique=True))
    gens = []
    for name in names:
        kind = draw(st.sampled_from(["int", "int", "stats", "hist"]))
        gens.append(Gen(name, kind, draw(st.sampled_from(SHAPES))))
    attached = "Attaching 2 probes...\n" if version == "0.17" else "Attached 2 probes\n"
    lines: list[str] = [attached]
    times: list[float] = [0.0]
    now = 0.0
    # the interval part: print()s of the maps in some order, each after a separator
    order = draw(st.lists(st.sampled_from(range(len(gens))), max_size=6))
    last: tuple[int, Printing] | None = None  # the last printing with entries, and its map
    for i in order:
        g = gens[i]
        p = draw(printing(g.kind, g.shape))
        g.printings.append(p)
        sep = draw(st.sampled_from(["printf", "time", "gap"]))
        if sep == "gap" and last is not None and last[0] == i and p.entries:
            # a pause is a boundary where the next print() repeats a key (print(@) again)
            p.entries[0] = (last[1].entries[0][0], p.entries[0][1])
        if p.entries:
            last = (i, p)
        now += 1.0
        body = render(g, p, version)
        if sep == "printf":
            lines.append("tick\n")
            times.append(now)
        elif sep == "time" and body:
            body[0] = f"10:00:{int(now) % 60:02d} " + body[0]
        lines += body
        times += [now] * len(body)
    # the exit dump: two blank lines, then every map once, in name order
    lines += ["\n", "\n"]
    now += 1.0
    times += [now, now]
    for g in sorted(gens, key=lambda g: g.name):
        p = draw(printing(g.kind, g.shape))
        g.printings.append(p)
        body = render(g, p, version)
        lines += body
        times += [now] * len(body)
        now += draw(st.sampled_from([0.0, 2.0]))  # symbols being read: no boundary here
    return "".join(lines), times, gens, version


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_every_printing_has_the_generators_entries_and_total(run: tuple) -> None:
    text, times, gens, _ = run
    out = parse_text(text, line_times=times)
    got = printed(out)
    assert out.unparsed == [], out.warnings
    for g in gens:
        # an empty print() prints nothing to read (0.27) or a blank line (0.17): no printing
        want = [expected(g, p) for p in g.printings if p.entries]
        have = [(p["entries"], p["total"]) for p in got.get(g.name, [])]
        assert have == want, (g.name, text)
    # the frames and the tables (what the CSVs are written from) count the same
    assert check_frames(got, to_frames(out)) == []
    assert check_frames(got, to_tables(out)) == []


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(run=runs())
def test_csv_folded_and_page_hold_what_was_printed(run: tuple, tmp_path_factory) -> None:
    text, times, gens, _ = run
    out = parse_text(text, line_times=times)
    got = printed(out)
    where: Path = tmp_path_factory.mktemp("run")
    frames = to_frames(out)
    write_run_dir(where, frames, {"printed": got})
    write_report(where, plots=False)
    assert check_run_dir(where, got, frames) == []
    for g in gens:
        stem = "at" if g.name == "@" else g.name[1:]
        if g.kind == "int" and (where / f"{stem}.flame.html").exists():
            # the page is told the total bpftrace printed in the printing it shows
            page = (where / f"{stem}.flame.html").read_text()
            last = [p for p in g.printings if p.entries][-1]
            assert f'"printed":{expected(g, last)[1]}' in page


def test_a_lost_row_is_said(tmp_path: Path) -> None:
    """The check can fail: a CSV row removed, a folded line cut, a page drawn short."""
    text = ("Attaching 1 probe...\n\n\n@[\n    read_zero+38\n    vfs_read+150\n]: 5\n@[]: 3\n"
            "@[\n    write+1\n]: 2\n@[]: 7\n\n")
    out = parse_text(text)
    got = printed(out)
    assert got == {"@": [{"printing": 1, "entries": 4, "total": 17}]}
    frames = to_frames(out)
    write_run_dir(tmp_path, frames, {"printed": got})
    write_report(tmp_path, plots=False)
    assert check_run_dir(tmp_path, got, frames) == []
    assert '"printed":17' in (tmp_path / "at.flame.html").read_text()
    csv = tmp_path / "at.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-1]))
    folded = tmp_path / "at.folded"
    folded.write_text(folded.read_text().splitlines(keepends=True)[0])
    lines = check_run_dir(tmp_path, got, frames)
    assert len(lines) == 2 and lines[0].startswith("@ printing 1: at.csv has 3 entries, "
                                                   "bpftrace printed 4")
    assert lines[1].startswith("@ printing 1: at.folded has total 10, bpftrace printed 17")
    assert differences("@", "x", got["@"], {1: (4, 16)}) == [
        "@ printing 1: x has total 16, bpftrace printed 17"]
    assert measure({"printing": [1, 1, 2], "value": [1, 2, 3]}) == {1: (2, 3), 2: (1, 3)}

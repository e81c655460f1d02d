"""bpftrace stdout (text or `-f json`) -> the Output model.

Text goes through the one Lark LALR grammar (grammar/bpftrace_output.lark) with a
transformer applied while parsing, so no parse tree is built. Both formats feed the
same `_Builder`, which cuts map printings and types keys, so text and json of one
run give the same model wherever json carries the information.

Limits of the text format (not of the parser): a printf line that is exactly a map line
(`@x[1]: 3`) reads as a map entry; a string key holding ", " splits into extra parts, which
`to_frames(..., key_names=...)` joins back once it knows the key's arity; upstream main's
nested tuples (`(1, 2)` inside a key) stay split at their commas.
"""

from __future__ import annotations

import bisect
import json
import re
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from harness.errors import HarnessError
from harness.output.model import (
    Bucket,
    Key,
    KeyPart,
    MapPrint,
    Output,
    PackedKey,
    Stack,
    Stats,
    pack_key,
)

GRAMMAR_FILE = "bpftrace_output.lark"


class ParseError(HarnessError):
    """bpftrace output the grammar cannot read; names line, column and the text there."""

    def __init__(self, cause: str, fix: str = "", *, line: int = 0, column: int = 0,
                 text: str = "") -> None:
        self.line = line
        self.column = column
        self.text = text
        super().__init__(cause, fix)


# ---------------------------------------------------------------- key and value typing

_INT = re.compile(r"-?\d+\Z")
_STACK = re.compile(r"(\n(?:[ \t]+[^\n]*\n)+)")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
          "E": 1 << 60}


def _scalar(part: str) -> KeyPart:
    return int(part) if _INT.match(part) else part


def split_key(body: str, sep: str) -> Key:
    """A printed key body (between `[` and `]`) -> typed parts; stacks become Stacks."""
    if "\n" not in body:
        if sep not in body:
            return (int(body) if _INT.match(body) else body,)
        return tuple(_scalar(p) for p in body.split(sep))
    parts: list[KeyPart] = []
    for i, seg in enumerate(_STACK.split(body)):
        if i % 2:  # a stack: indented frame lines, leaf first
            parts.append(Stack(line.strip() for line in seg.strip("\n").split("\n")))
            continue
        if i > 0 and seg.startswith(sep):
            seg = seg[len(sep):]
        elif i > 0 and seg.startswith(sep.rstrip()):
            seg = seg[len(sep.rstrip()):]
        if seg.endswith(sep):
            seg = seg[: -len(sep)]
        elif seg.endswith(sep.rstrip()):
            seg = seg[: -len(sep.rstrip())]
        if seg:
            parts.extend(_scalar(p) for p in seg.split(sep))
    return tuple(parts)


_BUCKET = re.compile(
    r"(?:\[(-?\d+)([KMGTPE]?)\]"
    r"|\[(-?\d+)([KMGTPE]?), (?:(-?\d+)([KMGTPE]?)|\.\.\.)\)"
    r"|\(\.\.\., (-?\d+)([KMGTPE]?)\)) *(\d+) "
)


def parse_bucket(line: str) -> Bucket:
    """One printed bucket line -> Bucket (lo inclusive, hi exclusive, None = open)."""
    m = _BUCKET.match(line)
    if m is None:  # the grammar admitted it, so this is a bug in one of the two
        raise ParseError(f"bucket line not understood: {line.strip()!r}",
                         "report this bpftrace output as a parser bug")
    single, su, lo, lu, hi, hu, top, tu, count = m.groups()
    if single is not None:
        v = int(single) * _UNITS[su]
        return Bucket(v, v + 1, int(count))
    if lo is not None:
        return Bucket(int(lo) * _UNITS[lu], None if hi is None else int(hi) * _UNITS[hu],
                      int(count))
    return Bucket(None, int(top) * _UNITS[tu], int(count))


def hist_kind(buckets: Iterable[Bucket]) -> str:
    """'hist' when every bounded bucket is a power-of-two range or a single value."""
    for b in buckets:
        if b.lo is None:
            continue
        if b.hi is None:
            return "lhist"
        if b.hi == b.lo + 1:
            continue
        if b.lo <= 0 or b.hi != 2 * b.lo or b.lo & (b.lo - 1):
            return "lhist"
    return "hist"


# ---------------------------------------------------------------- printings


class _Builder:
    """Collects entries in print order and cuts them into MapPrints.

    A printing ends when another map or a non-map line comes, or when a key repeats
    (bpftrace prints each key once per printing, so a repeat is the next print()).
    """

    def __init__(self, sep: str) -> None:
        self.out = Output()
        self.sep = sep
        self.current: MapPrint | None = None
        self.seen: set[PackedKey] = set()
        self.kinds: set[str] = set()
        self.counts: dict[str, int] = {}
        self.clock: list[tuple[int, float]] = []  # (line, seconds of day) of time() lines

    def close(self) -> None:
        cur = self.current
        if cur is None:
            return
        kinds = self.kinds
        if kinds == {"int"}:
            cur.kind = "int"
        elif kinds <= {"int", "str"}:
            cur.kind = "str"
            cur.values = [str(v) for v in cur.values]
        elif kinds == {"bucket"}:
            cur.kind = hist_kind(b for bs in cur.values for b in bs)
        elif kinds == {"stats"}:
            cur.kind = "stats"
        else:
            raise ParseError(f"map {cur.name} mixes value kinds {sorted(kinds)}",
                             "print maps of one kind per name")
        self.out.maps.append(cur)
        self.current = None

    def start(self, name: str, line: int = 0) -> MapPrint:
        self.close()
        n = self.counts.get(name, 0) + 1
        self.counts[name] = n
        self.current = MapPrint(name, n, "", key_sep=self.sep, line=line)
        self.seen = set()
        self.kinds = set()
        return self.current

    def add(self, name: str, key: Key, value: Any, kind: str, line: int = 0) -> None:
        packed = pack_key(key)
        cur = self.current
        if cur is None or cur.name != name or packed in self.seen:
            cur = self.start(name, line)
        self.seen.add(packed)
        self.kinds.add(kind)
        cur.packed_keys.append(packed)
        cur.values.append(value)

    def add_run(self, run: str, line: int = 0) -> None:
        """Many `@name[key]: value` lines at once (the 100,000-key fast path), the first
        on output line `line`.

        Lines are matched one by one (finditer, not findall) so peak memory stays near
        the size of the model itself.
        """
        sep = self.sep
        for i, m in enumerate(_RUN_LINE.finditer(run)):
            name, bracket, body, value = m.groups()
            key: PackedKey
            if not bracket:
                key = ()
            elif "\n" in body or sep in body:
                key = pack_key(split_key(body, sep))
            else:  # one plain part: the common case, kept without a tuple around it
                key = int(body) if _INT.match(body) else body
            cur = self.current
            if cur is None or cur.name != name or key in self.seen:
                cur = self.start(name, line + i)
            self.seen.add(key)
            if _INT.match(value):
                self.kinds.add("int")
                cur.values.append(int(value))
            else:
                self.kinds.add("str")
                cur.values.append(value)
            cur.packed_keys.append(key)

    def line(self, text: str, line: int = 0) -> None:
        self.close()
        if text.strip():
            self.out.lines.append(text)
            clock = _CLOCK.match(text)
            if clock:
                h, m, sec = clock.groups()
                self.clock.append((line, int(h) * 3600 + int(m) * 60 + float(sec)))

    def finish(self, line_times: Sequence[float] | None = None) -> Output:
        """Close the last printing and stamp every printing with its t_s."""
        self.close()
        maps = self.out.maps
        if line_times is not None:
            n = len(line_times)
            for mp in maps:
                mp.t_s = float(line_times[mp.line - 1]) if 0 < mp.line <= n else None
        elif self.clock:
            lines = [ln for ln, _ in self.clock]
            first = self.clock[0][1]
            for mp in maps:
                at = bisect.bisect_left(lines, mp.line) - 1
                if at >= 0:  # seconds since the first time() line; wraps at midnight
                    mp.t_s = (self.clock[at][1] - first) % 86400.0
        return self.out


# A line printed by bpftrace's time() with its default format ("%H:%M:%S").
_CLOCK = re.compile(r"(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)\Z")


# ---------------------------------------------------------------- text


_RUN_LINE = re.compile(r"^(@\w*)(\[(.*)\])?: (.*)$", re.M)
_ENTRY = re.compile(r"(@\w*)(?:\[(.*)\])?: ?(.*?)\n?\Z", re.S)
_STATS_VALUE = re.compile(r"count (-?\d+), average (-?\d+), total (-?\d+)\Z")
_ATTACHED = re.compile(r"Attach(?:ing|ed) (\d+) probe")
_JSON_RECORD = re.compile(r'\{"type": ?"')


def _entry_parts(token: str, sep: str) -> tuple[str, Key, str]:
    m = _ENTRY.match(token)
    assert m is not None, token
    name, body, value = m.groups()
    return name, (() if body is None else split_key(body, sep)), value


def _stack_entry_parts(token: str, sep: str) -> tuple[str, Key, str]:
    """Like _entry_parts, but a last line `]: value` closes the key at its first `]:`,
    so a string value holding `]:` stays whole (a stack key's close is unambiguous)."""
    body_end = token.rstrip("\n").rfind("\n")
    last = token[body_end + 1:]
    if not last.startswith("]:"):
        return _entry_parts(token, sep)
    name, _, body = token[:body_end + 1].partition("[")
    value = last[2:].rstrip("\n")
    return name, split_key(body, sep), value[1:] if value.startswith(" ") else value


def _token_error(tok: Any, what: str, fix: str) -> ParseError:
    first = str(tok).split("\n", 1)[0]
    return ParseError(f"{what} at line {tok.line}, column {tok.column}: {first[:80]!r}", fix,
                      line=tok.line, column=tok.column, text=first)


def _make_transformer(builder_ref: list[_Builder]) -> Any:
    from lark import Transformer

    class ToBuilder(Transformer):  # type: ignore[type-arg]
        """Feeds each reduced grammar rule straight into the current _Builder."""

        def attached(self, children: list[Any]) -> None:
            m = _ATTACHED.match(children[0])
            builder_ref[0].out.probes = int(m.group(1)) if m else None

        def hist(self, children: list[Any]) -> None:
            b = builder_ref[0]
            for tok in children[1:]:
                if tok.type == "BAD_BUCKET":
                    raise _token_error(tok, "hist bucket line not understood",
                                       "the output is damaged or from an unknown bpftrace "
                                       "version; compare with `bpftrace -f json`")
            name, key, _ = _entry_parts(children[0], b.sep)
            b.add(name, key, [parse_bucket(t) for t in children[1:]], "bucket",
                  children[0].line)

        def empty_value(self, children: list[Any]) -> None:
            b = builder_ref[0]
            name, key, _ = _entry_parts(children[0], b.sep)
            b.add(name, key, "", "str", children[0].line)

        def stats(self, children: list[Any]) -> None:
            b = builder_ref[0]
            name, key, value = _entry_parts(children[0], b.sep)
            c, a, t = (int(x.split()[-1]) for x in value.split(", "))
            b.add(name, key, Stats(c, a, t), "stats", children[0].line)

        def stack_entry(self, children: list[Any]) -> None:
            b = builder_ref[0]
            name, key, value = _stack_entry_parts(children[0], b.sep)
            stats = _STATS_VALUE.match(value)
            if stats:
                b.add(name, key, Stats(*(int(g) for g in stats.groups())), "stats",
                      children[0].line)
            elif _INT.match(value):
                b.add(name, key, int(value), "int", children[0].line)
            else:
                b.add(name, key, value, "str", children[0].line)

        def entry_run(self, children: list[Any]) -> None:
            builder_ref[0].add_run(children[0], children[0].line)

        def open_stack(self, children: list[Any]) -> None:
            raise _token_error(children[0], "stack key not closed by ']:'",
                               "the output was cut off; keep bpftrace running until it "
                               "prints its maps")

        def text(self, children: list[Any]) -> None:
            builder_ref[0].line(str(children[0]).rstrip("\n"), children[0].line)

        def blank(self, children: list[Any]) -> None:
            return None

    return ToBuilder()


_PARSER_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _parser() -> tuple[Any, list[_Builder]]:
    """The compiled LALR parser (built once per process; Lark caches it on disk too)."""
    from lark import Lark

    grammar = resources.files("harness.grammar").joinpath(GRAMMAR_FILE).read_text()
    ref: list[_Builder] = [_Builder(", ")]
    parser = Lark(grammar, parser="lalr", lexer="contextual",
                  transformer=_make_transformer(ref), cache=True)
    return parser, ref


def parse_text(text: str, *, line_times: Sequence[float] | None = None) -> Output:
    """bpftrace's default text output -> Output. Raises ParseError on unreadable input.

    `line_times[i]` is when line i+1 of `text` arrived, in seconds since the probes
    attached (the runner records them); a printing's t_s is the time of its first line.
    Without them, t_s comes from `time()` lines printed between printings, else is None.
    """
    from lark.exceptions import UnexpectedInput, VisitError

    if "\r" in text:  # read through a pty (pexpect): CRLF line ends
        text = text.replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        text += "\n"
    if _JSON_RECORD.match(text[:200].lstrip()):  # only the start is looked at
        raise ParseError("this is bpftrace -f json output, not text (line 1 is a json record)",
                         "parse it with --format json (harness.output.parse.parse_json)",
                         line=1, column=1, text=text[:200].lstrip().split("\n", 1)[0])
    parser, ref = _parser()
    builder = _Builder(", ")
    try:
        with _PARSER_LOCK:  # the one compiled parser feeds whichever builder is in ref
            ref[0] = builder
            parser.parse(text)
    except VisitError as err:  # a ParseError raised inside a transformer callback
        if isinstance(err.orig_exc, ParseError):
            raise err.orig_exc from None
        raise
    except UnexpectedInput as err:
        line, col = err.line, err.column
        bad = text.splitlines()[line - 1] if 0 < line <= text.count("\n") else ""
        raise ParseError(
            f"bpftrace output not understood at line {line}, column {col}: {bad[:80]!r}",
            "check that the file is bpftrace text output (use --format json for -f json)",
            line=line, column=col, text=bad) from None
    return builder.finish(line_times)


# ---------------------------------------------------------------- json


def _json_buckets(raw: list[dict[str, int]]) -> list[Bucket]:
    """json buckets carry inclusive min/max; the model keeps hi exclusive (max + 1)."""
    out = []
    for b in raw:
        lo = b.get("min")
        hi = b.get("max")
        out.append(Bucket(lo, None if hi is None else hi + 1, int(b["count"])))
    return out


_DOUBLE_ESCAPED = re.compile(r'\\n[ \t]|\\"')


def _unescape_key(key: str) -> str:
    """bpftrace 0.23 json-escapes map keys twice (a stack key arrives holding a literal
    backslash-n); undo the second escaping. Keys from 0.17 never hold those sequences."""
    if "\\" in key and _DOUBLE_ESCAPED.search(key):
        try:
            return str(json.loads(f'"{key}"'))
        except ValueError:
            return key
    return key


def _json_value(kind: str, value: Any) -> tuple[Any, str]:
    if kind == "hist":
        return _json_buckets(value), "bucket"
    if isinstance(value, dict) and "count" in value and "average" in value:
        return Stats(int(value["count"]), int(value["average"]), int(value["total"])), "stats"
    if isinstance(value, bool):
        return str(value).lower(), "str"
    if isinstance(value, int):
        return value, "int"
    if isinstance(value, str) and _INT.match(value):  # newer bpftrace: ints beyond 2**53
        return int(value), "int"
    return value if isinstance(value, str) else json.dumps(value), "str"


def _is_keyed(kind: str, value: Any) -> bool:
    if kind == "hist":
        return isinstance(value, dict)
    if kind == "stats":
        return isinstance(value, dict) and not ("count" in value and "average" in value
                                                and "total" in value and len(value) == 3)
    return isinstance(value, dict)


def parse_json(text: str, *, line_times: Sequence[float] | None = None) -> Output:
    """bpftrace `-f json` output (one object per line) -> Output.

    Lines that are not json objects are the traced command's own stdout and are kept
    in `lines`, as the text format keeps them; input with no json record at all is an
    error (text given to the json reader would otherwise read as zero maps).
    """
    b = _Builder(",")
    records = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        if not raw.lstrip().startswith("{"):  # the traced command's own stdout (-c CMD)
            b.line(raw, lineno)
            continue
        try:
            obj = json.loads(raw)
            kind = obj["type"]
            data = obj.get("data")
        except (ValueError, KeyError, TypeError) as err:
            raise ParseError(
                f"not bpftrace json at line {lineno}: {raw[:80]!r} ({err.__class__.__name__})",
                "check that the file is `bpftrace -f json` output (use --format text otherwise)",
                line=lineno, column=1, text=raw) from None
        if kind == "attached_probes":  # 0.17/0.23: data.probes; newer: count
            b.out.probes = int(data["probes"] if isinstance(data, dict) else obj["count"])
        elif kind in ("map", "hist", "stats", "lhist"):
            kind = "hist" if kind == "lhist" else kind
            for name, value in data.items():
                b.start(name, lineno)
                if _is_keyed(kind, value):
                    sep = b.sep
                    for k, v in value.items():
                        val, vk = _json_value(kind, v)
                        b.add(name, split_key(_unescape_key(k), sep), val, vk, lineno)
                else:
                    val, vk = _json_value(kind, value)
                    b.add(name, (), val, vk, lineno)
                b.close()
        elif kind in ("printf", "time", "cat", "join", "syscall", "system"):
            for piece in str(data).split("\n"):
                b.line(piece, lineno)
        elif kind in ("lost_events", "helper_error", "runtime_error", "print_error", "warning",
                      "error"):
            said = raw if data is None else data if isinstance(data, str) else json.dumps(data)
            b.out.warnings.append(f"line {lineno}: {said}")
        else:
            b.line(json.dumps(data) if not isinstance(data, str) else data, lineno)
        records += 1
    if records == 0 and text.strip():
        bad = next(line for line in text.splitlines() if line.strip())
        raise ParseError(f"no bpftrace json record in the input (first line: {bad[:80]!r})",
                         "parse it as text (--format text) or run bpftrace with -f json",
                         line=1, column=1, text=bad)
    return b.finish(line_times)

"""bpftrace stdout (text or `-f json`) -> the Output model.

Text goes through the one Lark LALR grammar (grammar/bpftrace_output.lark) with a
transformer applied while parsing, so no parse tree is built. Both formats feed the
same `_Builder`, which cuts map printings and types keys, so text and json of one
run give the same model wherever json carries the information.

A printing is what bpftrace printed at once, cut only where the output or the run says so
(see `_Builder`); a repeated string or stack key is a row, never a boundary, and rows with
equal keys are kept as rows (not summed), so every total is what bpftrace printed; a repeated
int key (or a scalar map's second line) can only be another print() of the map. In `-f json`
a repeated key keeps every pair (object_pairs_hook). results/README.md "Printings" lists the
boundaries.

Limits of the text format (not of the parser): a printf line that is exactly a line of a map
the program has (`@x[1]: 3` beside a map @x), or any such line when the program is not given
(`parse_text(text, program=...)`), reads as a map entry; a string key holding ", " splits into
extra parts, which `to_frames(..., key_names=...)` joins back once it knows the key's arity;
upstream main's nested tuples (`(1, 2)` inside a key) stay split at their commas. Text that
stops inside its last line was cut off there: an entry that line ends is not read (a warning
names it), whatever it looks like.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import json
import numbers
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput, VisitError
from lark.lexer import Lexer

from harness.errors import HarnessError, UsageError
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
from harness.spec.literal import map_names, print_targets

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

# A decimal int bpftrace can print (64 bits: at most 20 digits, 19 after a minus). A longer
# run of digits is no integer of bpftrace's: a string value (they print raw), read as text.
_INT = re.compile(r"(?:\d{1,20}|-\d{1,19})\Z")
_INT_DIGITS = re.compile(r"-?\d+")
_STACK = re.compile(r"(\n(?:[ \t]+[^\n]*\n)+)")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
          "E": 1 << 60}


def _scalar(part: str) -> KeyPart:
    return int(part) if _INT.match(part) else part


def split_key(body: str, sep: str) -> Key:
    """A printed key body (between `[` and `]`) -> typed parts; stacks become Stacks.

    Parts are joined by `sep`; a stack part is its indented frame lines, each ending in a
    newline, so an empty stack is an empty part: `@[ustack, kstack]` with no kernel stack is
    `[<frames>\n, ]`, with no user stack `[, \n<frames>\n]`. Every part is kept, empty ones as
    "" (frames turn "" into an empty stack in a column of stacks), so the arity holds.
    """
    if "\n" not in body:
        if sep not in body:
            return (int(body) if _INT.match(body) else body,)
        return tuple(_scalar(p) for p in body.split(sep))
    # text, stack, text, ..., stack, text; a text's edge newlines are 0.24+'s own-line joints
    pieces = [p if i % 2 else p.strip("\n") for i, p in enumerate(_STACK.split(body))]
    last = len(pieces) - 1
    parts: list[KeyPart] = []
    for i, seg in enumerate(pieces):
        if i % 2:  # a stack: indented frame lines, leaf first
            parts.append(Stack(line.strip() for line in seg.strip("\n").split("\n")))
            continue
        if i > 0:  # after a stack: the separator that ends it
            if not seg:
                continue
            seg = _without(seg, sep, lead=True)
            if not seg and i < last:  # stack, sep, stack: no part between
                continue
        elif not seg:  # the key starts with a stack
            continue
        if i < last:  # before a stack: the separator that starts it
            seg = _without(seg, sep, lead=False)
        parts.extend(_scalar(p) for p in seg.split(sep))
    return tuple(parts) or ("",)  # `@m[` then `]: 5`: 0.24+'s empty stack alone


def _without(seg: str, sep: str, *, lead: bool) -> str:
    """`seg` without the separator at its start (lead) or end; a separator whose trailing
    space was stripped (`,` for `, `) is taken too."""
    for s in (sep, sep.rstrip()):
        if lead and seg.startswith(s):
            return seg[len(s):]
        if not lead and seg.endswith(s):
            return seg[: -len(s)]
    return seg


def parse_bucket(line: str) -> Bucket:
    """One printed bucket line -> Bucket (lo inclusive, hi exclusive, None = open)."""
    m = _shapes().bucket.match(line)
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

    A printing is what bpftrace printed at once. It ends where bpftrace's output says so:
    another map's line, a printed (non-map) line, a blank line that no hist or stack value
    owns (0.17 ends a stats map and an empty print() with one; both versions start the exit
    dump with two), a map line that starts mid-line after printf/time() text. A repeated
    key is never a boundary: one printing may hold equal keys (an empty and a failed stack
    both print as `@[]`, usym/ksym of different addresses, two processes of one binary),
    and they stay rows. Back-to-back print()s of one map with nothing between them look
    like one printing in the text; they are cut, for a map the program print()s (`_cut`),
    where an int key (or the scalar map's line) comes again, which no printing holds twice,
    and where the line after an arrival gap repeats any key of the printing.
    Text lines right after a string value are held back: when the same printing goes on
    with a new key they were the rest of that value (bpftrace prints strings raw, so a
    value holding a newline spans lines), otherwise they are printed lines.
    """

    def __init__(self, sep: str) -> None:
        self.out = Output()
        self.sep = sep
        self.current: MapPrint | None = None
        self.seen: set[PackedKey] = set()
        self.kinds: set[str] = set()
        self.counts: dict[str, int] = {}
        self.clock: list[tuple[int, float]] = []  # (line, seconds of day) of time() lines
        self.held: list[tuple[int, str]] = []  # text lines that may continue a value
        self.work = 0  # bytes the text lexer's regexes were given (see _lex_lines)
        self.blank_after: set[int] = set()  # header lines followed by a blank line
        self.text = ""  # the text being lexed (entry runs are read from it in place)
        self.owns_blank = False  # the last entry (a hist or stack value) ends in a blank line
        self.breaks: list[int] = []  # sorted lines after an arrival gap (see _cut)
        self.gap_maps: frozenset[str] | None = None  # maps the program print()s (None: any)
        self.unique_cuts = True  # a repeated int key starts a printing (text; see _cut)
        self._names: set[str] | None = None  # see line_start_names
        # The map names the program can print (None: not known, any `@name` line is a map).
        self.known: frozenset[str] | None = None
        # The last line when the output did not end in a newline: cut off mid-line (0: none).
        self.cut_line = 0
        self.cut_said = False
        # Entry lines in runs read column-wise (the fast path), or one token per line (the
        # grammar path, parse_text_by_lines): both give the same Output.
        self.runs = True

    def warn(self, line: int, what: str) -> None:
        self.out.warnings.append(f"line {line}: {what}" if line else what)

    def close(self) -> None:
        self._release()
        cur = self.current
        if cur is None:
            return
        kinds = self.kinds
        if "stack" in kinds and kinds <= {"stack", "maybe_hist", "str"} and all(
                isinstance(v, Stack) or v in ("", []) for v in cur.values):
            cur.values = [v if isinstance(v, Stack) else Stack() for v in cur.values]
            kinds = {"stack"}  # a stack value printed empty (no frames) beside others
        if "maybe_hist" in kinds:  # header + blank line: a zeroed hist, or an empty string
            if kinds <= {"maybe_hist", "bucket"}:
                kinds = {"bucket"}
            else:
                cur.values = ["" if k == [] else k for k in cur.values]
                kinds = (kinds - {"maybe_hist"}) | {"str"}
        if kinds == {"int"} and cur.values and not (
                min(cur.values) >= -(1 << 63) and max(cur.values) < 1 << 64):
            kinds = {"str"}  # a number no 64-bit int holds: strings bpftrace printed
        if kinds == {"int"}:
            cur.kind = "int"
        elif kinds <= {"int", "str"}:
            cur.kind = "str"
            cur.values = [str(v) for v in cur.values]
            self._warn_long_digits(cur)
        elif kinds == {"bucket"}:
            cur.kind = hist_kind(b for bs in cur.values for b in bs)
        elif kinds == {"stats"}:
            cur.kind = "stats"
        elif kinds == {"stack"}:
            cur.kind = "stack"
        elif not kinds:
            cur.kind = "int"
        else:
            raise ParseError(f"map {cur.name} mixes value kinds {sorted(kinds)}"
                             + (f" (printing from line {cur.line})" if cur.line else ""),
                             "print maps of one kind per name", line=cur.line)
        self.out.maps.append(cur)
        self.current = None

    def _warn_long_digits(self, cur: MapPrint) -> None:
        """A number no 64-bit int holds is a string bpftrace printed (it prints strings
        raw), so the printing is a string map; say so, as it looks like a number."""
        if max(map(len, cur.values), default=0) < 20:
            return
        long = next((v for v in cur.values if len(v) >= 20 and _INT_DIGITS.fullmatch(v)
                     and not -(1 << 63) <= int(v[:22]) < 1 << 64), None)
        if long is not None:
            self.warn(cur.line, f"{cur.name} holds a value of {len(long.lstrip('-'))} digits, "
                                "beyond bpftrace's 64-bit integers: its values are read as "
                                "strings")

    def start(self, name: str, line: int = 0) -> MapPrint:
        self.close()
        n = self.counts.get(name, 0) + 1
        self.counts[name] = n
        self.current = MapPrint(name, n, "", key_sep=self.sep, line=line)
        self.seen = set()
        self.kinds = set()
        return self.current

    def _continues(self, name: str, packed: PackedKey) -> bool:
        """Held text lines are the rest of the last string value: the same printing goes
        on (same map, a key not seen yet) after them."""
        cur = self.current
        if not self.held or cur is None or cur.name != name or packed in self.seen:
            return False
        if not cur.values or not isinstance(cur.values[-1], str):
            return False
        first = self.held[0][0]
        cur.values[-1] += "".join("\n" + t for _, t in self.held)
        self.warn(first, f"{len(self.held)} line(s) from here continue the string value "
                         f"of {name} above (a newline inside the string); re-joined")
        self.held = []
        return True

    def _release(self) -> None:
        """Held lines turned out to be printed lines."""
        held, self.held = self.held, []
        for line, text in held:
            self._printed(text, line)

    def add(self, name: str, key: Key, value: Any, kind: str, line: int = 0) -> None:
        packed = pack_key(key)
        if self.held and not self._continues(name, packed):
            self.close()
        cur = self.current
        self.owns_blank = False
        if cur is None or cur.name != name or self._cut(name, packed, line):
            cur = self.start(name, line)
        self.seen.add(packed)
        self.kinds.add(kind)
        cur.packed_keys.append(packed)
        cur.values.append(value)

    def add_run(self, run: str, line: int = 0, start: int = 0, stop: int | None = None
                ) -> None:
        """Many `@name[key]: value` lines at once (the 100,000-key fast path), the first
        on output line `line`.

        The run is taken in chunks of whole lines, each cut into one-map segments; a
        segment of plain one-part keys with all-int or all-string values is read
        column-wise (str.split, map(int): the per-line work in C), anything else line by
        line. Chunks keep the peak memory near the size of the model itself.
        `run[start:stop]` is the run when given (read in place).
        """
        n = len(run) if stop is None else stop
        pos = start
        run_head = _shapes().run_head
        while pos < n:
            end = run.find("\n", min(pos + _RUN_CHUNK, n - 1)) + 1 or n
            chunk = run[pos:end]
            while chunk:
                m = run_head.match(chunk)
                assert m is not None, chunk[:80]
                prefix = m.group(0)
                cut = _segment_end(prefix).search(chunk)
                seg_end = cut.start() + 1 if cut else len(chunk)
                segment = chunk[:seg_end]
                if self.held or not self._add_segment_fast(segment, m.group(1), prefix, line):
                    self.add_lines(segment, line)
                line += segment.count("\n")
                chunk = chunk[seg_end:]
            pos = end

    def _add_segment_fast(self, segment: str, name: str, prefix: str, line: int) -> bool:
        """Lines that all start with `prefix` (`@name[` or `@name: `), column-wise. False
        (nothing added) when they need the line-by-line path."""
        lines = segment.count("\n")
        body = segment[len(prefix):-1]
        keys: list[Any]
        if prefix.endswith("["):
            parts = body.replace("\n" + prefix, "]: ").split("]: ")  # k, v, k, v, ...
            if len(parts) != 2 * lines:  # a key or value holding `]: `: line by line
                return False
            typed_keys = _typed_column(parts[0::2], self.sep)
            if typed_keys is None:
                return False
            keys = typed_keys[0]
            values = parts[1::2]
        else:
            values = body.split("\n" + prefix)
            if len(values) != lines:
                return False
            keys = [()] * lines
        typed = _typed_column(values, None)
        if typed is None:
            return False
        vals, kind = typed
        start = 0
        for at in self._breaks_in(line + 1, line + lines):  # _extend decides on each
            self._extend(name, keys[start:at - line], vals[start:at - line], kind, line + start)
            start = at - line
        self._extend(name, keys[start:], vals[start:], kind, line + start)
        return True

    def add_lines(self, run: str, line: int) -> None:
        """Entry lines one by one: tuple and stack keys, mixed kinds, glued entries."""
        sep = self.sep
        for i, m in enumerate(_shapes().entry_lines.finditer(run)):
            name, body, value = m.groups()
            key: PackedKey
            if body is None:
                key = ()
            elif "@" in body and name + "[" in body:  # 0.17: entries glued on one line
                self._glued(m.group(0), name, line + i)
                continue
            elif "\n" in body or sep in body:
                key = pack_key(split_key(body, sep))
            else:  # one plain part: the common case, kept without a tuple around it
                key = int(body) if _INT.match(body) else body
            if self.held and not self._continues(name, key):
                self.close()
            cur = self.current
            self.owns_blank = False
            if cur is None or cur.name != name or self._cut(name, key, line + i):
                cur = self.start(name, line + i)
            self.seen.add(key)
            if _INT.match(value):
                self.kinds.add("int")
                cur.values.append(int(value))
            else:
                self.kinds.add("str")
                cur.values.append(value)
            cur.packed_keys.append(key)

    def _extend(self, name: str, keys: list[Any], vals: list[Any], kind: str, line: int
                ) -> None:
        """Append entries to the current printing of `name` (else to a new printing)."""
        start = 0
        while start < len(keys):
            cur = self.current
            self.owns_blank = False
            if (cur is None or cur.name != name or start
                    or self._cut(name, keys[start], line + start)):
                cur = self.start(name, line + start)
            stop = self._repeat_at(name, keys, start)
            cur.packed_keys.extend(keys[start:stop])
            cur.values.extend(vals[start:stop])
            self.seen.update(keys[start:stop])
            self.kinds.add(kind)
            start = stop

    def _glued(self, text: str, name: str, line: int) -> None:
        """bpftrace 0.17 prints keyed ksym/usym/inet/kaddr/uaddr values with no newline
        between entries (`@a[1]: ::1@a[2]: 10.0.0.1`): split them back."""
        pieces = text.split(name + "[")[1:]
        entries = [p.partition("]: ") for p in pieces]
        if not all(sep for _, sep, _ in entries):  # not that shape: keep the greedy reading
            m = _shapes().entry.match(text)
            assert m is not None
            self.add(name, split_key(m.group(2), self.sep), m.group(3), "str", line)
            return
        self.warn(line, f"{len(entries)} entries of {name} printed on one line (bpftrace "
                        "0.17 omits the newline after ksym/usym/inet/kaddr/uaddr values); split")
        for body, _, value in entries:
            self.add(name, split_key(body, self.sep), int(value) if _INT.match(value)
                     else value, "int" if _INT.match(value) else "str", line)

    def line(self, text: str, line: int = 0, *, may_continue: bool = True) -> None:
        """A text line: maybe the rest of a string value, else a printed line (which ends
        the printing before it). `may_continue` is False for text that a map line follows
        on the same output line (`time("%H:%M:%S "); print(@)`)."""
        cur = self.current
        if (may_continue and cur is not None and cur.values and isinstance(cur.values[-1], str)
                and text.strip()):
            self.held.append((line, text))
            return
        self.close()
        self._printed(text, line)

    def blank(self) -> None:
        """A blank line ends the printing unless it is the one that ends a hist or stack
        value entry (bpftrace prints one after each)."""
        if self.owns_blank:
            self.owns_blank = False
            return
        self.close()

    def line_start_names(self) -> set[str]:
        """Names of the maps printed at a line start anywhere in the text (found once)."""
        if self._names is None:
            self.work += len(self.text)
            self._names = set(_shapes().line_start_names.findall(self.text))
        return self._names

    def _breaks_in(self, first: int, stop: int) -> list[int]:
        """The break lines in [first, stop)."""
        if not self.breaks:
            return []
        lo = bisect.bisect_left(self.breaks, first)
        hi = bisect.bisect_left(self.breaks, stop, lo)
        return self.breaks[lo:hi]

    def _cut(self, name: str, packed: PackedKey, line: int) -> bool:
        """The entry on `line` starts another print() of the current printing's map: it
        repeats a key the printing already has, the map is one the program print()s
        (`gap_maps`), and either the key is one no printing can hold twice (`_unique_key`) or
        it came after an arrival gap (`breaks`). A gap alone is no boundary: bpftrace pauses
        inside one printing too (resolving symbols, descheduled under load)."""
        return (packed in self.seen and self._printed_by_program(name)
                and ((self.unique_cuts and _unique_key(packed))
                     or (bool(self.breaks) and bool(self._breaks_in(line, line + 1)))))

    def _printed_by_program(self, name: str) -> bool:
        """The map is one the program print()s (any map when the program is not known): only
        such a map is printed more than once."""
        return self.gap_maps is None or name in self.gap_maps

    def _repeat_at(self, name: str, keys: list[Any], start: int) -> int:
        """The first index after `start` whose key is a `_unique_key` that the printing (or
        keys[start:] before it) already holds: a back-to-back print() of the map begins there
        (len(keys) when none does)."""
        if not self.unique_cuts or not self._printed_by_program(name):
            return len(keys)
        rest = keys[start:]
        if len(set(rest)) == len(rest) and self.seen.isdisjoint(rest):  # the common case
            return len(keys)
        local: set[Any] = set()
        for i in range(start, len(keys)):
            key = keys[i]
            if i > start and _unique_key(key) and (key in self.seen or key in local):
                return i
            local.add(key)
        return len(keys)

    def is_map(self, name: str) -> bool:
        """Whether `@name` lines may be the map's: any name when the program is not known."""
        return self.known is None or name in self.known

    def cut_entry(self, line: int, text: str, start: int = 0, head: str = "") -> bool:
        """Whether the entry ending on `line` runs into the cut-off last line; if so it is
        not read (its value may be cut mid-number) and a warning names the line. `start`
        and `head`: where an entry of several lines began, and its first line."""
        if line != self.cut_line or not line:
            return False
        self.cut_said = True
        self.out.unparsed.append(line)
        last = text.split("\n", 1)[0]
        if self.held:  # text lines before it continue a string value if it goes on its map
            first = (head or text).split("\n", 1)[0]
            m = _shapes().keyed(first)
            if m:
                key = () if m.group(2) is None else split_key(m.group(2), self.sep)
                self._continues(m.group(1), pack_key(key))
        if start and start != line:
            what = (f"cut off at {last[-40:]!r}): the entry from line {start} "
                    f"({head.split(chr(10), 1)[0][:80]!r})")
        else:
            what = f"cut off): {last[:80]!r}"
        self.warn(line, "incomplete: the output ends inside this line, without a newline "
                        f"({what} is not read as a value")
        return True

    def _cut_string(self) -> None:
        """Text lines held after a string value, the last of them cut off: they may be the
        rest of that value (bpftrace prints a blank line after a map, not text), so the value
        is not read as complete."""
        cur = self.current
        if not (self.cut_line and self.held and self.held[-1][0] == self.cut_line
                and cur is not None and cur.values and isinstance(cur.values[-1], str)):
            return
        key = cur.packed_keys.pop()
        cur.values.pop()
        self.seen.discard(key)
        lines = [ln for ln, _ in self.held]
        self.held = []
        self.out.unparsed.extend(lines)
        self.cut_said = True
        self.warn(self.cut_line, "incomplete: the output ends inside this line, without a "
                                 f"newline (cut off), and lines {lines[0]}-{lines[-1]} may "
                                 f"continue the string value of {cur.name} key {key!r} "
                                 "above: that value is not read")

    def _printed(self, text: str, line: int) -> None:
        start = _shapes().map_start.match(text) if self.sep == ", " else None  # text only
        if start and self.is_map(start.group(1)):
            if self.cut_entry(line, text):
                return
            self.out.unparsed.append(line)
            self.warn(line, f"not understood, though it starts like a map line: {text[:80]!r}")
            return
        if line and line == self.cut_line and self.cut_said:
            return  # the cut line closed an entry already named incomplete
        if line and line == self.cut_line and text.strip():
            self.cut_said = True
            self.warn(line, "the output ends inside this printed line, without a newline "
                            f"(cut off?): {text[:80]!r}")
        if text.strip():
            self.out.lines.append(text)
            clock = _shapes().clock.match(text)
            if clock:
                h, m, sec = clock.groups()
                self.clock.append((line, int(h) * 3600 + int(m) * 60 + float(sec)))

    def finish(self, line_times: Sequence[float] | None = None) -> Output:
        """Close the last printing and stamp every printing with its t_s."""
        self._cut_string()
        self.close()
        if self.cut_line and not self.cut_said:
            self.warn(self.cut_line, "the output ends inside this line, without a newline "
                                     "(cut off?)")
        maps = self.out.maps
        if line_times is not None:
            n = len(line_times)
            for mp in maps:
                mp.t_s = float(line_times[mp.line - 1]) if 0 < mp.line <= n else None
        elif self.clock:
            lines = [ln for ln, _ in self.clock]
            first = self.clock[0][1]
            for mp in maps:
                at = bisect.bisect_right(lines, mp.line) - 1  # same line: time(); print(@)
                if at >= 0:  # seconds since the first time() line; wraps at midnight
                    mp.t_s = (self.clock[at][1] - first) % 86400.0
        return self.out



# ---------------------------------------------------------------- text


_INT_CHARS = re.compile(r"[0-9,-]*")
_ANY_INT_PART = re.compile(r"\0-?\d+(?=\0)")


_RUN_CHUNK = 1 << 17  # bytes of a run read at once


@lru_cache(maxsize=64)
def _segment_end(prefix: str) -> re.Pattern[str]:
    """Where the first line that does not start with `prefix` begins (at its `\n`)."""
    return re.compile("\n(?!" + re.escape(prefix) + "|\\Z)")


def _all_ints(joined: str) -> bool:
    """NUL-joined parts are all decimal ints (-?[0-9]+), checked without a regex pass."""
    unsigned = joined.replace("\0-", "\0").removeprefix("-")
    if (not unsigned or unsigned.startswith("\0") or unsigned.endswith("\0")
            or "\0\0" in unsigned):
        return False  # an empty part, or one that is only "-"
    digits = unsigned.replace("\0", "")
    return digits.isascii() and digits.isdigit()


def _typed_column(parts: Sequence[str], sep: str | None) -> tuple[list[Any], str] | None:
    """Printed keys (sep given) or values, all ints or all strings, typed in C-level passes:
    (list, 'int' | 'str'), or None when they need the line-by-line path (tuple keys, glued
    entries, ints and strings mixed)."""
    commas = ",".join(parts)
    joined = "\0".join(parts)
    # digits past 20 are no bpftrace int (see _INT): those parts go line by line
    if _INT_CHARS.fullmatch(commas) and max(map(len, parts), default=0) <= 20:
        try:  # json reads decimal ints in C, faster than int()
            ints = json.loads("[" + commas + "]")
            if len(ints) == len(parts):
                return ints, "int"
        except ValueError:  # "007", "-", "" or "1-2": not json; checked part by part
            pass
        if _all_ints(joined):
            return list(map(int, parts)), "int"
    if "@" in joined or (sep is not None and sep in joined):
        return None
    if _ANY_INT_PART.search("\0" + joined + "\0"):
        return None
    return list(parts), "str"


_JSON_RECORD = re.compile(r'\{"type": ?"')
_JSON_DIAG_HEAD = re.compile(r"^\S+:\d+(?:-\d+)?(?::\d+(?:-\d+)?)?: (?:WARNING|ERROR): ")
_UNDERLINE = re.compile(r"^[\s~^]+$")
# One stack frame as 0.24+ json keys hold it (whitespace stripped): sym+off, an address.
_FLAT_FRAME = re.compile(r"\S+\+\d+\S*|0x[0-9a-fA-F]+\S*|\[unknown\]|[0-9a-f]{1,16}")
_HEX = frozenset("0123456789abcdef")  # how a RAW_FRAME line starts

_JOIN_LIMIT = 64  # lines a key holding newlines may span


def _uncaptured(pattern: str) -> str:
    """`pattern` with its capturing groups made non-capturing (escapes, classes kept)."""
    return re.sub(r"\\.|\[(?:\\.|[^\]])*\]|\((?!\?)",
                  lambda m: "(?:" if m.group(0) == "(" else m.group(0), pattern)


class _Shapes:
    """The line shapes of grammar/bpftrace_output.lark, compiled; each is matched against one
    line (match(text, start, end_of_line)). Built once, from the Lark grammar object."""

    def __init__(self, patterns: dict[str, str]) -> None:
        def one(name: str) -> re.Pattern[str]:
            return re.compile(patterns[name])

        self.attached = one("ATTACHED")
        self.stats_line = one("STATS_LINE")
        self.stats_value = re.compile(f"(?:{patterns['STATS_VALUE']})\\Z")
        self.entry = one("ENTRY")
        self.head = one("HEAD")
        self.map_start = one("MAP_START")
        self.bucket = one("BUCKET")
        self.key_open = one("KEY_OPEN")
        self.frame = one("FRAME")
        self.raw_frame = one("RAW_FRAME")
        self.close_head = one("CLOSE_HEAD")
        self.close_value = one("CLOSE_VALUE")
        self.join_end = one("JOIN_END")
        self.clock = one("CLOCK")
        self.name = one("_NAME")
        self.run_head = one("ENTRY_START")
        # derived: every ENTRY line of a run (finditer), names at a line start (findall)
        self.entry_lines = re.compile(patterns["ENTRY"], re.M)
        self.line_start_names = re.compile("^" + patterns["MAP_START"], re.M)
        # ENTRY_RUN: ENTRY lines, none followed by an indented line (that line heads a stack).
        # Possessive: a finished line is never revisited, so the regex keeps no state per line
        # and can fail only inside the first line.
        self.run = re.compile(f"(?:{_uncaptured(patterns['ENTRY'])}\\n(?![ \\t]))++", re.M)

    def keyed(self, line: str) -> re.Match[str] | None:
        """A one-line map line that names its map and key (groups 1 and 2): a header,
        stats or entry line."""
        return self.head.match(line) or self.stats_line.match(line) or self.entry.match(line)


@lru_cache(maxsize=1)
def _shapes() -> _Shapes:
    """The line shapes, read from the compiled grammar's terminal definitions (all of them:
    Lark keeps only the terminals its rules use, so the grammar is compiled keeping every
    one)."""
    parser = _parser()
    terminals = parser.grammar.compile(parser.options.start, "*")[0]
    return _Shapes({t.name: t.pattern.to_regexp() for t in terminals})


def _token(kind: str, text: str, pos: int, line: int, end: int | None = None) -> Any:
    return Token(kind, text, pos, line, 1, end_pos=pos + len(text) if end is None else end)


def _lex_lines(text: str, accepts: Any, builder: _Builder) -> Iterator[Any]:
    """The line lexer: yields one terminal per line (ENTRY_RUN: per run of lines).

    `accepts()` names the terminals the parser can take next (the contextual part).
    Work is counted as the bytes each regex was given: a line per call, or the matched
    run plus the line it stopped in.
    """
    n = len(text)
    pos = 0
    line = 1
    builder.text = text
    # an entry run stops before a cut-off last line, so that line is an entry of its own
    cut_at = text.rfind("\n", 0, n - 1) + 1 if builder.cut_line else n
    shapes = _shapes()
    runs = builder.runs
    while pos < n:
        eol = text.find("\n", pos)
        if eol < 0:
            eol = n
        nxt = eol + 1
        width = eol - pos + 1
        acc = accepts()
        c = text[pos]
        kind = _classify(text, pos, eol, nxt, c, acc, builder, width)
        if kind == "ENTRY_RUN" and not runs:  # the grammar path: one token per entry line
            kind = "ENTRY"
        if kind == "ENTRY_RUN":
            m = shapes.run.match(text, pos, cut_at if pos < cut_at else n)
            assert m is not None
            end = m.end()
            if builder.known is not None:
                end = _known_run_end(text, pos, end, builder.known)
            stop = text.find("\n", end)
            builder.work += (end - pos) + ((stop if stop >= 0 else n) - end)
            # the token holds the first line; the run is read from `text` in place (a copy
            # of a 100,000-line run would cost the text's size again)
            tok = _token(kind, text[pos:nxt], pos, line, end)
            line += text.count("\n", pos, end)
            pos = end
            yield tok
            continue
        if kind == "JOINED":
            end, lines = _join_end(text, nxt, builder)
            tok = _token(kind, text[pos:end], pos, line)
            line += lines + 1
            pos = end
            yield tok
            continue
        if kind == "TEXT" and "TEXT" in acc:
            at = _mid_line_map(text, pos, eol, nxt, acc, builder, width)
            if at > pos:  # `time("%H:%M:%S "); print(@)`: the text, then the map line
                yield _token(kind, text[pos:at], pos, line)
                pos = at
                continue
        if kind in ("HEAD", "CLOSE_HEAD") and text.startswith("\n", nxt):
            builder.blank_after.add(line)
        yield _token(kind, text[pos:nxt], pos, line)
        line += 1
        pos = nxt


def _classify(text: str, pos: int, eol: int, nxt: int, c: str, acc: Any, builder: _Builder,
              width: int) -> str:
    """The terminal for the line text[pos:eol] given what the parser accepts."""
    item = "TEXT" in acc
    s = _shapes()
    if "FRAME" in acc and (c in " \t" or (c in _HEX and s.frame.match(text, pos, eol))):
        return "FRAME"
    if eol == pos or (c in " \t" and not text[pos:eol].strip()):
        return "BLANK"
    if c in "[(" and "BUCKET" in acc:
        builder.work += width
        return "BUCKET" if s.bucket.match(text, pos, eol) else "BAD_BUCKET"
    if c == "," and "JOINT" in acc and (text.startswith((" ", "\t"), nxt)
                                        or _lone_comma(text, pos, eol)):
        return "JOINT"  # newer releases print an empty stack part as a `, ` line alone
    if c in ",]" and "CLOSE_VALUE" in acc:
        builder.work += width
        if s.close_head.match(text, pos, eol):
            return "CLOSE_HEAD"
        return "CLOSE_VALUE" if s.close_value.match(text, pos, eol) else "TEXT"
    if not item:
        return "TEXT"
    if c == "@":
        builder.work += 3 * width
        if builder.known is not None and not builder.is_map(
                text[pos:s.name.match(text, pos, eol).end()]):  # type: ignore[union-attr]
            return "TEXT"  # printf text shaped like a map line: the program has no such map
        indented_next = text.startswith((" ", "\t"), nxt) or (
            text.endswith(("[", ", "), pos, eol) and _raw_frame_at(text, nxt))
        if s.head.match(text, pos, eol):
            return "HEAD"
        if indented_next or (text.endswith(("[", ", "), pos, eol) and (
                text.startswith("]:", nxt) or _lone_comma(text, nxt, text.find("\n", nxt)))):
            return "KEY_OPEN" if s.key_open.match(text, pos, eol) else "TEXT"
        if s.stats_line.match(text, pos, eol):
            return "STATS_LINE"
        if s.entry.match(text, pos, eol):  # one line: the lexer then takes the whole run
            return "ENTRY_RUN"
        if s.key_open.match(text, pos, eol) and _join_end(text, nxt, builder)[0] > 0:
            return "JOINED"
        return "TEXT"
    if c == "A":
        builder.work += width
        if s.attached.match(text, pos, eol):
            return "ATTACHED"
    return "TEXT"


_MID_LINE_TRIES = 4  # '@'s of one text line looked at as a possible map line start


def _mid_line_map(text: str, pos: int, eol: int, nxt: int, acc: Any, builder: _Builder,
                  width: int) -> int:
    """Where a map line starts inside the text line text[pos:eol] (bpftrace prints a map
    right after printf/time() text with no newline between), else `pos`.

    A start is an `@` after a space or tab (and some text) whose rest of the line reads as a
    map line (an entry, stats, a hist/stack header, or a stack key's first line) and is more
    than printf text shaped like one: the text before it is a time() stamp, or the next
    line is a line of the same map, or the output prints that map at a line start too
    (the exit dump). At most `_MID_LINE_TRIES` `@`s are tried per line, and the names
    printed at line starts are found once per output: the work stays linear.
    """
    at = pos
    for _ in range(_MID_LINE_TRIES):
        at = text.find("@", at + 1, eol)
        if at < 0:
            return pos
        if text[at - 1] not in " \t" or not text[pos:at].strip():
            continue
        kind = _classify(text, at, eol, nxt, "@", acc, builder, eol - at + 1)
        if kind not in ("ENTRY_RUN", "STATS_LINE", "HEAD", "KEY_OPEN"):
            continue
        if kind == "KEY_OPEN" and not text.endswith(("[", ", "), at, eol):
            continue  # a stack key's first line is `@m[` or `@m[part, `
        name = _shapes().name.match(text, at, eol)
        assert name is not None
        builder.work += at - pos
        if (_shapes().clock.search(text, pos, at)  # a time() stamp before it
                or text.startswith((name.group(0) + "[", name.group(0) + ":"), nxt)
                or name.group(0) in builder.line_start_names()):
            return at
    return pos


def _lone_comma(text: str, pos: int, eol: int) -> bool:
    """The line text[pos:eol] is `,` or `, ` alone: the joint before an empty stack part, as
    bpftrace 0.24+ prints `@[ustack, kstack]` (`@[`, frames, `, `, `]: 1`; `@[`, `, `, frames);
    an empty stack alone is `@m[` then `]: 1`."""
    return eol > pos and text[pos] == "," and eol - pos <= 2 and text[pos:eol].rstrip() == ","


def _known_run_end(text: str, pos: int, end: int, known: frozenset[str]) -> int:
    """Where an entry run stops at the first line of a name the program has no map of (a
    printf line shaped like an entry). Read a map's segment at a time, not line by line."""
    run_head = _shapes().run_head
    while pos < end:
        m = run_head.match(text, pos, end)
        if m is None or m.group(1) not in known:
            return pos
        cut = _segment_end(m.group(0)).search(text, pos, end)
        pos = cut.start() + 1 if cut else end
    return end


def _join_end(text: str, start: int, builder: _Builder) -> tuple[int, int]:
    """Where a key holding newlines ends: the first later line `...]: value`, with no line
    between that starts a map line or a stack frame. (0, 0) when there is none."""
    pos = start
    n = len(text)
    join_end = _shapes().join_end
    for lines in range(1, _JOIN_LIMIT + 1):
        if pos >= n or text[pos] in "@ \t\n":
            return 0, 0
        eol = text.find("\n", pos)
        if eol < 0:
            eol = n
        builder.work += eol - pos + 1
        if join_end.match(text, pos, eol):
            return eol + 1, lines
        pos = eol + 1
    return 0, 0


def _token_error(tok: Any, what: str, fix: str) -> ParseError:
    first = str(tok).split("\n", 1)[0]
    return ParseError(f"{what} at line {tok.line}: {first[:80]!r}", fix,
                      line=tok.line, column=1, text=first)


def _key_of(head: str, sep: str) -> tuple[str, Key]:
    """`@name[body]: ...` or `@name: ...` (one line) -> name and typed key."""
    m = _shapes().keyed(head.rstrip("\n"))
    assert m is not None, head
    name, body = m.group(1), m.group(2)
    return name, (() if body is None else split_key(body, sep))


def _stack_key(tokens: list[Any], sep: str) -> tuple[str, Key, str]:
    """KEY_OPEN FRAME.. (JOINT FRAME..)* CLOSE -> name, key, the text after `]:`."""
    open_line = str(tokens[0]).rstrip("\n")
    name, _, first = open_line.partition("[")
    close = str(tokens[-1]).rstrip("\n")
    shapes = _shapes()
    m = shapes.close_head.match(close)  # first: `]: ` alone also fits CLOSE_VALUE's shape
    value = ""
    if m is None:
        m = shapes.close_value.match(close)
        assert m is not None, close
        value = m.group(3)
    # raw-mode frames are printed unindented: indent them, as split_key reads frames
    body = first + "\n" + "".join(t if t[:1] in " \t," else "    " + t
                                  for t in map(str, tokens[1:-1])) + m.group(1)[:-1]
    return name, split_key(body, sep), value


def _unique_key(packed: PackedKey) -> bool:
    """A key no printing holds twice: ints (bpftrace's own map keys, printed as they are)
    and the scalar map's empty key. Printed strings and stacks may repeat within a printing
    (usym/ksym of different addresses, equal stacks of different ids)."""
    if type(packed) is int:
        return True
    return type(packed) is tuple and all(type(p) is int for p in packed)


def _raw_frame_at(text: str, pos: int) -> bool:
    """The line at pos is a `kstack(raw)` frame: a bare hex address alone on its line."""
    eol = text.find("\n", pos)
    return _shapes().raw_frame.match(text, pos, len(text) if eol < 0 else eol) is not None


def _glued_empty_stacks(line: str, name: str) -> list[str]:
    """`@s[1]: @s[2]: @s[3]: ` (empty stack values run together, the last entry's frames on
    the lines below): the heads before the last, each as its own `@s[k]:` line."""
    glue = f": {name}["
    if glue not in line or not line.startswith(f"{name}["):
        return []
    pieces = line.rstrip("\n").split(glue)
    heads = [pieces[0] + ":"] + [f"{name}[{p}:" for p in pieces[1:-1]]
    return heads if all(h.endswith("]:") for h in heads) else []


def _stats(value: str) -> Stats:
    """A printed stats value (STATS_VALUE's shape: exactly three numbers) -> Stats."""
    count, average, total = map(int, _INT_DIGITS.findall(value))
    return Stats(count, average, total)


def _scalar_value(value: str) -> tuple[Any, str]:
    if _shapes().stats_value.match(value):
        return _stats(value), "stats"
    if _INT.match(value):
        return int(value), "int"
    return value, "str"


def _make_transformer() -> Any:
    class ToBuilder(Transformer):  # type: ignore[type-arg]
        """Feeds each reduced grammar rule straight into the builder of the parse in
        progress (`_BUILDER`)."""

        def attached(self, children: list[Any]) -> None:
            b = _BUILDER.get()
            m = _shapes().attached.match(children[0])
            b.out.probes = int(m.group(1)) if m else None

        def head_block(self, children: list[Any]) -> None:
            b = _BUILDER.get()
            first = children[0]
            if first.type == "HEAD":
                name, key = _key_of(first, b.sep)
                head_at = 0
                glued = _glued_empty_stacks(str(first), name)
                if glued:
                    b.warn(first.line, f"{len(glued) + 1} entries of {name} printed on one "
                           "line (bpftrace prints an empty stack value as nothing, without a "
                           "newline); split, all but the last with an empty stack")
                    for head in glued:
                        b.add(name, _key_of(head, b.sep)[1], Stack(), "stack", first.line)
                    name, key = _key_of(str(first).rsplit(f": {name}[", 1)[-1].join(
                        (f"{name}[", "")), b.sep)
            else:
                head_at = next(i for i, t in enumerate(children) if t.type == "CLOSE_HEAD")
                name, key, _ = _stack_key(children[:head_at + 1], b.sep)
            tail = children[head_at + 1:]
            line = first.line
            if b.cut_entry(children[-1].line, str(children[-1]), line, str(first)):
                return
            if not tail:
                if children[head_at].line in b.blank_after:
                    b.add(name, key, [], "maybe_hist", line)
                    b.owns_blank = True
                else:
                    b.add(name, key, "", "str", line)
            elif tail[0].type == "FRAME":
                b.add(name, key, Stack(str(t).strip() for t in tail), "stack", line)
                b.owns_blank = True
            else:
                for tok in tail:
                    if tok.type == "BAD_BUCKET":
                        raise _token_error(tok, "hist bucket line not understood",
                                           "the output is damaged or from an unknown bpftrace "
                                           "version; compare with `bpftrace -f json`")
                b.add(name, key, [parse_bucket(t) for t in tail], "bucket", line)
                b.owns_blank = True

        def stats(self, children: list[Any]) -> None:
            b = _BUILDER.get()
            tok = children[0]
            if b.cut_entry(tok.line, str(tok)):
                return
            m = _shapes().stats_line.match(tok.rstrip("\n"))
            assert m is not None
            name, body, value = m.groups()
            key = () if body is None else split_key(body, b.sep)
            b.add(name, key, _stats(value), "stats", tok.line)

        def keyed_stack(self, children: list[Any]) -> None:
            b = _BUILDER.get()
            if b.cut_entry(children[-1].line, str(children[-1]), children[0].line,
                           str(children[0])):
                return
            name, key, value = _stack_key(children, b.sep)
            val, kind = _scalar_value(value)
            b.add(name, key, val, kind, children[0].line)

        def joined(self, children: list[Any]) -> None:
            b = _BUILDER.get()
            tok = children[0]
            lines = str(tok).rstrip("\n").split("\n")
            if b.cut_entry(tok.line + len(lines) - 1, lines[-1], tok.line, lines[0]):
                return
            m = _shapes().join_end.match(lines[-1])
            assert m is not None
            name, _, first = lines[0].partition("[")
            body = "\n".join([first, *lines[1:-1], m.group(1)])
            b.warn(tok.line, f"a key of {name} holding {len(lines) - 1} newline(s) spans lines "
                             f"{tok.line}-{tok.line + len(lines) - 1}; re-joined")
            val, kind = _scalar_value(m.group(2))
            b.add(name, split_key(body, b.sep), val, kind, tok.line)

        def entry(self, children: list[Any]) -> None:  # the grammar path: one entry line
            tok = children[0]
            b = _BUILDER.get()
            if b.cut_entry(tok.line, str(tok)):
                return
            b.add_lines(str(tok), tok.line)

        def entry_run(self, children: list[Any]) -> None:
            tok = children[0]
            b = _BUILDER.get()
            if b.cut_entry(tok.line, str(tok)):  # a run ends before the cut line: alone
                return
            b.add_run(b.text, tok.line, tok.start_pos, tok.end_pos)

        def open_stack(self, children: list[Any]) -> None:
            b = _BUILDER.get()
            last = children[-1].line
            if b.cut_line in (last, last + 1) and b.cut_entry(
                    b.cut_line, b.text[b.text.rfind("\n", 0, len(b.text) - 1) + 1:],
                    children[0].line, str(children[0])):
                return  # cut off inside the key or its closing line: incomplete, rest kept
            raise _token_error(children[0], "stack key not closed by ']:'",
                               "the output was cut off; keep bpftrace running until it "
                               "prints its maps")

        def text(self, children: list[Any]) -> None:
            tok = children[0]
            text = str(tok)
            # no line end: the text before a map line on the same output line
            _BUILDER.get().line(text.rstrip("\n"), tok.line, may_continue=text.endswith("\n"))

        def blank(self, children: list[Any]) -> None:
            _BUILDER.get().blank()

    return ToBuilder()


def _make_lexer() -> type:
    class LineLexer(Lexer):
        """Lark's hook for a custom lexer: our line lexer, contextual on the parser state."""

        __future_interface__ = 1

        def __init__(self, lexer_conf: Any) -> None:
            self.conf = lexer_conf

        def lex(self, lexer_state: Any, parser_state: Any) -> Iterator[Any]:
            states = parser_state.parse_conf.parse_table.states

            def accepts() -> Any:
                return states[parser_state.position]

            text = lexer_state.text
            yield from _lex_lines(text if isinstance(text, str) else text.text, accepts,
                                  _BUILDER.get())

    return LineLexer


_BUILDER: contextvars.ContextVar[_Builder] = contextvars.ContextVar("builder")
"""The builder of the parse in progress. The LALR tables take 40 ms to build, so one parser
serves every parse, and its lexer and transformer (fixed at construction, as Lark wants
them) find their call's builder here: each parse sets its own, so parses in other threads
never share one and none waits for another."""


@lru_cache(maxsize=1)
def _parser() -> Any:
    """The compiled LALR parser (built once per process)."""
    grammar = resources.files("harness.grammar").joinpath(GRAMMAR_FILE).read_text()
    return Lark(grammar, parser="lalr", lexer=_make_lexer(), transformer=_make_transformer())


def _parse_into(builder: _Builder, text: str) -> None:
    parser = _parser()
    token = _BUILDER.set(builder)
    try:
        parser.parse(text)
    except VisitError as err:  # a ParseError raised inside a transformer callback
        if isinstance(err.orig_exc, ParseError):
            raise err.orig_exc from None
        raise
    except UnexpectedInput as err:
        line = getattr(err, "line", 0)
        line = line if isinstance(line, int) and line > 0 else text.count("\n")
        bad = text.splitlines()[line - 1] if 0 < line <= text.count("\n") else ""
        raise ParseError(
            f"bpftrace output not understood at line {line}: {bad[:80]!r}",
            "check that the file is bpftrace text output (use --format json for -f json)",
            line=line, column=1, text=bad) from None
    finally:
        _BUILDER.reset(token)


def _normalized(text: str) -> tuple[str, int]:
    """LF line ends, a newline at the end; and the number of the last line when the text did
    not end in one (0 otherwise): bpftrace ends every line, so that line was cut off."""
    if "\r" in text:  # read through a pty (pexpect): CRLF line ends
        text = text.replace("\r\n", "\n")
    if text and not text.endswith("\n"):
        return text + "\n", text.count("\n") + 1
    return text, 0


def _check_arguments(text: Any, line_times: Any, program: Any = None) -> None:
    """parse_text's and parse_json's arguments, checked as the rest of the API checks its
    own (harness.arguments, which this pure module does not import: it reaches the lanes): a
    UsageError naming the parameter, not a TypeError inside."""
    for name, value, example in (("text", text, "open('stdout.txt').read()"),
                                 ("program", program, "open('program.bt').read()")):
        if not isinstance(value, str) and not (name == "program" and value is None):
            raise UsageError(f"{name}={repr(value)[:60]} is not a string",
                             f"pass e.g. {name}={example}")
    if line_times is not None and (
            not isinstance(line_times, Sequence) or isinstance(line_times, str)
            or not (set(map(type, line_times)) <= {float, int}  # the runner's: C-level
                    or all(isinstance(t, numbers.Real) for t in line_times))):
        raise UsageError(f"line_times={repr(line_times)[:60]} is not a sequence of seconds",
                         "pass e.g. line_times=[0.0, 0.5] (one per line), or None")


def parse_text(text: str, *, line_times: Sequence[float] | None = None,
               program: str | None = None) -> Output:
    """bpftrace's default text output -> Output. Raises ParseError on unreadable input.

    `line_times[i]` is when line i+1 of `text` arrived, in seconds since the probes
    attached (the runner records them); a printing's t_s is the time of its first line.
    Without them, t_s comes from `time()` lines printed between printings, else is None.
    They also cut back-to-back print()s of one map, which the text does not separate: an
    entry line that arrived `PRINT_GAP_S` or more after the line before it, before the exit
    dump (which prints each map once, and may pause while it resolves symbols), starts a new
    printing when its key is one the printing already has and `program` passes that map to
    print().

    `program` is the bpftrace program that printed `text`, when known: a line shaped like
    an entry of a map the program has none of (`@x: 5` from a printf) is then a printed
    line. Text that does not end in a newline was cut off inside its last line: an entry
    there is not read (its value may be cut mid-number); a warning names the line.
    """
    return _parse_text(text, line_times, program, runs=True)


def parse_text_by_lines(text: str, *, line_times: Sequence[float] | None = None,
                        program: str | None = None) -> Output:
    """parse_text by the grammar path alone: every entry line is its own ENTRY token,
    reduced by the grammar and read by the transformer, where parse_text reads a run of entry
    lines column-wise (its fast path). The same Output, slower: a check of the fast path."""
    return _parse_text(text, line_times, program, runs=False)


def _parse_text(text: str, line_times: Sequence[float] | None, program: str | None, *,
                runs: bool) -> Output:
    _check_arguments(text, line_times, program)
    text, cut_line = _normalized(text)
    if _JSON_RECORD.match(text[:200].lstrip()):  # only the start is looked at
        raise ParseError("this is bpftrace -f json output, not text (line 1 is a json record)",
                         "parse it with --format json (harness.output.parse.parse_json)",
                         line=1, column=1, text=text[:200].lstrip().split("\n", 1)[0])
    builder = _Builder(", ")
    builder.runs = runs
    if line_times is not None:
        builder.breaks = _arrival_breaks(text, line_times)
    builder.cut_line = cut_line
    if program is not None:
        builder.known = map_names(program)
        if line_times is not None:
            builder.gap_maps = print_targets(program)
    _parse_into(builder, text)
    return builder.finish(line_times)


PRINT_GAP_S = 0.25  # a pause in the output this long between two entry lines: a new print()


def _arrival_breaks(text: str, line_times: Sequence[float]) -> list[int]:
    """Lines (1-based) that arrived PRINT_GAP_S or more after the line before them, up to
    the exit dump (both 0.17 and 0.27 start it with two blank lines: its last occurrence)."""
    exit_at = text.rfind("\n\n\n")
    last = len(line_times) if exit_at < 0 else min(len(line_times),
                                                     text.count("\n", 0, exit_at) + 1)
    return [i + 1 for i in range(1, last)
            if line_times[i] - line_times[i - 1] >= PRINT_GAP_S]


def lexer_work(text: str) -> int:
    """Bytes the text lexer's regexes were given to parse `text` (ParseError or not): a
    deterministic measure of parse work, for the linearity property test."""
    builder = _Builder(", ")
    with contextlib.suppress(ParseError):
        _parse_into(builder, _normalized(text)[0])
    return builder.work


# ---------------------------------------------------------------- json


# 0.17 computes the [2G, 4G) log2 bucket's bounds in 32 bits: min 1 << 31 wraps negative
# and max (1 << 32) - 1 to 0. No real bucket has min < 0 < max + 1 with max == 0.
_WRAPPED_2G = (-(1 << 31), 0)


def _json_buckets(raw: list[dict[str, int]], repairs: list[str]) -> list[Bucket]:
    """json buckets carry inclusive min/max; the model keeps hi exclusive (max + 1)."""
    out = []
    for b in raw:
        lo = b.get("min")
        hi = b.get("max")
        if (lo, hi) == _WRAPPED_2G:
            lo, hi = 1 << 31, (1 << 32) - 1
            repairs.append("the [2G, 4G) hist bucket written as {min: -2147483648, max: 0} "
                           "(bpftrace 0.17's 32-bit shift); read as [2147483648, 4294967296)")
        out.append(Bucket(lo, None if hi is None else hi + 1, int(b["count"])))
    return out


# A stack value (`@m[k] = kstack`): json gives the text layout, frames on indented lines.
_STACK_VALUE = re.compile(r"\n(?:[ \t]+[^\n]*\n)+\Z")
# 0.17 writes non-ASCII bytes of strings as sign-extended escapes: é -> \uffffffc3\uffffffa9
_WIDE_BYTES = re.compile(r"(?:\\uffffff[0-9a-fA-F]{2})+")
# Where a map value starts: after `"key": ` or `{"@name": `.
_VALUE_AT = re.compile(r'": ')


def _bytes_escapes_fixed(raw: str) -> str:
    """Runs of \\uffffffXX escapes -> the UTF-8 text they spell, json-escaped again."""
    def decode(m: re.Match[str]) -> str:
        data = bytes(int(h[-2:], 16) for h in m.group(0).split("\\u")[1:])
        return json.dumps(data.decode("utf-8", "replace"))[1:-1]
    return _WIDE_BYTES.sub(decode, raw)


def _bare_values_quoted(raw: str) -> tuple[str, int]:
    """0.17 writes strftime/strerror/macaddr/cgroup_path values unquoted
    (`{"1": No such file or directory}`): quote each value json cannot read.
    A bare value runs to the next `, "` (the next key) or `}`."""
    decoder = json.JSONDecoder()
    out: list[str] = []
    done = 0
    quoted = 0
    for m in _VALUE_AT.finditer(raw):
        at = m.end()
        if at < done:
            continue
        if raw.startswith(("{", "["), at):  # a nested map, hist or stats: read inside
            continue
        try:
            _, end = decoder.raw_decode(raw, at)
            if raw.startswith((",", "}"), end):
                continue
        except ValueError:
            pass
        ends = [i for i in (raw.find(', "', at), raw.find("}", at)) if i >= 0]
        if not ends:
            continue
        end = min(ends)
        out.append(raw[done:at])
        out.append(json.dumps(raw[at:end]))
        done = end
        quoted += 1
    out.append(raw[done:])
    return "".join(out), quoted


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


def _json_value(kind: str, value: Any, repairs: list[str]) -> tuple[Any, str]:
    if kind == "hist":
        return _json_buckets(value, repairs), "bucket"
    if isinstance(value, dict) and "count" in value and "average" in value:
        return Stats(int(value["count"]), int(value["average"]), int(value["total"])), "stats"
    if isinstance(value, bool):
        return str(value).lower(), "str"
    if isinstance(value, int):
        return value, "int"
    if isinstance(value, str) and _INT.match(value):  # newer bpftrace: ints beyond 2**53
        return int(value), "int"
    if isinstance(value, str) and value.startswith("\n") and _STACK_VALUE.match(value):
        return Stack(f.strip() for f in value.strip("\n").split("\n")), "stack"
    return value if isinstance(value, str) else json.dumps(value), "str"


class _Pairs(list[tuple[str, Any]]):
    """A json object whose keys repeat, every pair in order (a dict keeps only the last):
    bpftrace writes one pair per entry, and entries of one printing may print equal keys."""

    def items(self) -> _Pairs:
        return self


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _Pairs:
    """json's object_pairs_hook: a dict, or _Pairs when a key repeats."""
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _Pairs(pairs)


def _is_keyed(kind: str, value: Any) -> bool:
    if isinstance(value, _Pairs):
        return True
    if kind == "hist":
        return isinstance(value, dict)
    if kind == "stats":
        return isinstance(value, dict) and not ("count" in value and "average" in value
                                                and "total" in value and len(value) == 3)
    return isinstance(value, dict)


def _flat_stack(body: str) -> bool:
    """A json key holding a stack whose frames lost their indentation: every line between
    newlines (but the `,` joints of a tuple) is a frame. Strings with newlines are not."""
    inner = [seg for seg in body.split("\n")[1:-1] if not seg.startswith(",")]
    return bool(inner) and all(_FLAT_FRAME.fullmatch(seg) for seg in inner)


def _reindent_frames(body: str) -> str:
    """Indent the frame lines of a json stack key (all but the first and last segment, and
    not the `,` joints between tuple parts) so split_key reads them as a stack."""
    segments = body.split("\n")
    inner = [seg if seg.startswith(",") else "    " + seg for seg in segments[1:-1]]
    return "\n".join([segments[0], *inner, segments[-1]])


def _int64(v: Any) -> bool:
    """An integer bpftrace can write: 64 bits, signed or not (json's true/false are none)."""
    return type(v) is int and -(1 << 63) <= v < 1 << 64


def _json_value_error(kind: str, v: Any) -> str | None:
    """What in one map value is not of the shape bpftrace writes for its record kind."""
    if kind in ("hist", "lhist"):
        if not isinstance(v, list) or not all(isinstance(b, dict) for b in v):
            return "a hist value is a list of buckets"
        for b in v:
            if not _int64(b.get("count")) or not all(
                    b.get(end) is None or _int64(b[end]) for end in ("min", "max")):
                return "a hist bucket has an int count and int min/max"
        return None
    if isinstance(v, dict) and "count" in v and "average" in v:
        if not all(_int64(v.get(f)) for f in ("count", "average", "total")):
            return "a stats value has int count, average and total"
        return None
    if type(v) is int and not _int64(v):
        return f"an int of {len(str(abs(v)))} digits, beyond bpftrace's 64 bits"
    return None


def _json_shape_error(obj: dict[str, Any]) -> str | None:
    """What in one json record is not of the shape bpftrace writes, or None: the readers
    below index into it as bpftrace writes it."""
    kind = obj["type"]
    data = obj.get("data")
    if not isinstance(kind, str):
        return '"type" is not a string'
    if kind == "attached_probes":
        probes = data.get("probes") if isinstance(data, dict) else obj.get("count")
        return None if _int64(probes) else "no int probe count"
    if kind not in ("map", "hist", "stats", "lhist"):
        return None
    if not isinstance(data, dict | _Pairs):
        return f'the "data" of a {kind} record is not an object of maps'
    for name, value in data.items():
        for v in ([v for _, v in value.items()] if _is_keyed(kind, value) else (value,)):
            problem = _json_value_error(kind, v)
            if problem:
                return f"{name if name.isprintable() else repr(name)}: {problem}"
    return None


def parse_json(text: str, *, line_times: Sequence[float] | None = None) -> Output:
    """bpftrace `-f json` output (one object per line) -> Output.

    Lines that are not json objects are the traced command's own stdout and are kept
    in `lines`, as the text format keeps them; input with no json record at all is an
    error (text given to the json reader would otherwise read as zero maps).
    """
    _check_arguments(text, line_times)
    b = _Builder(",")
    b.unique_cuts = False  # a json record is a printing: its pairs never start another
    records = 0
    in_diagnostic = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        # bpftrace 0.27 writes its compile-time diagnostics to stdout in json mode, as text:
        # a located header line, the source excerpt (which may hold a lone `{`), an underline.
        if _JSON_DIAG_HEAD.match(raw):
            in_diagnostic = True
            b.warn(lineno, f"bpftrace diagnostic in the json output: {raw}")
            continue
        if in_diagnostic and not _JSON_RECORD.match(raw):
            in_diagnostic = not _UNDERLINE.match(raw)  # the excerpt ends at its underline
            continue
        in_diagnostic = False
        if not raw.lstrip().startswith("{"):  # the traced command's own stdout (-c CMD)
            b.line(raw, lineno)
            continue
        if "\\uffffff" in raw:
            raw = _bytes_escapes_fixed(raw)
            b.warn(lineno, "non-ASCII bytes written as \\uffffffXX escapes (bpftrace 0.17); "
                           "decoded as UTF-8")
        try:
            try:
                obj = json.loads(raw, object_pairs_hook=_pairs)
            except ValueError:
                fixed, quoted = _bare_values_quoted(raw)
                if not quoted:
                    raise
                obj = json.loads(fixed, object_pairs_hook=_pairs)
                b.warn(lineno, f"{quoted} value(s) written without quotes (bpftrace 0.17's "
                               "strftime/strerror/macaddr/cgroup_path); quoted")
            kind = obj["type"]
            data = obj.get("data")
        except (ValueError, KeyError, TypeError) as err:
            raise ParseError(
                f"not bpftrace json at line {lineno}: {raw[:80]!r} ({err.__class__.__name__})",
                "check that the file is `bpftrace -f json` output (use --format text otherwise)",
                line=lineno, column=1, text=raw) from None
        shape = _json_shape_error(obj)
        if shape:
            raise ParseError(
                f"not bpftrace json at line {lineno}: {raw[:80]!r} ({shape})",
                "check that the file is `bpftrace -f json` output (use --format text otherwise)",
                line=lineno, column=1, text=raw)
        if kind == "attached_probes":  # 0.17/0.23: data.probes; newer: count
            b.out.probes = int(data["probes"] if isinstance(data, dict) else obj["count"])
        elif kind in ("map", "hist", "stats", "lhist"):
            kind = "hist" if kind == "lhist" else kind
            repairs: list[str] = []
            for name, value in data.items():
                b.start(name, lineno)
                if _is_keyed(kind, value):
                    sep = b.sep
                    for k, v in value.items():
                        val, vk = _json_value(kind, v, repairs)
                        body = _unescape_key(k)
                        if "\n" in body and _flat_stack(body):
                            body = _reindent_frames(body)
                            repairs.append(
                                f"{name}: stack frames in the json keys had no indentation "
                                "(bpftrace 0.24+ strips whitespace from json keys); read as stacks"
                            )
                        b.add(name, split_key(body, sep), val, vk, lineno)
                else:
                    val, vk = _json_value(kind, value, repairs)
                    b.add(name, (), val, vk, lineno)
                b.close()
            for what in dict.fromkeys(repairs):
                b.warn(lineno, what)
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

"""A program compiled ahead of time once per shape, its run's values filled in per run.

Two runs of one spec differ in three values only: the workload's pid (the filter), the run's
marker (BEGIN's printf) and the stop probe's pid (derived from the marker,
harness.lanes.aot.stop_pid). bpftrace --aot writes each as plain bytes at fixed places of its
output: a pid as the 32-bit immediate of a BPF instruction, the marker as the characters of the
printf format it keeps. So a later run of the same program need not compile it again (0.2 s
here idle, 0.6-1.2 s at load 4, on the run's critical path): it fills its values into a program
compiled before.

Nothing is taken on faith; a template exists only when proven on three points:
- the program's text depends on the values only where they are written: the text for two
  sentinel pids is one text with a hole for the pid and a hole for the marker (`shape`);
- two compiles of that text with two sentinel values (`SENTINELS`: pids and markers whose
  digits differ everywhere) have the same length, each sentinel's bytes at the same places in
  both (the slots), and are equal everywhere else: the output depends on nothing but the slots;
- the template filled with the first run's own values equals that run's own compile, byte for
  byte (made() gets it: the run compiled it as before, and the two sentinel compiles ran in
  the background meanwhile).
A later run fills a template only when its own program text is exactly the template's text
filled with its values, its marker has the template's form (same length, digits where the
sentinel has them) and the template was made by the same bpftrace on the same machine (the
key: bpftrace's version and file, this kernel, BPFTRACE_* settings, the local tracepoint
formats the program reads). Anything else compiles as before. KTRACE_AOT_REUSE=0 turns the
reuse off (benchmarks compare both).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.lanes import aot
from harness.paths import cache_home

FORM = 1  # the templates' format (a change makes every older one a miss)
PID_HOLE, MARKER_HOLE = "\0pid\0", "\0marker\0"
# Two sentinel pids (below pid_max, 2^22: the range a real pid is in) and marker digits; every
# digit of one differs from the other's at the same place, so no slot can hide.
SENTINEL_PIDS = (3_917_453, 2_860_271)
SENTINEL_DIGITS = ("1357924680", "2468013579")
MAX_PID = (1 << 31) - 1  # a pid slot holds a 32-bit immediate, sign-extended by BPF


def enabled() -> bool:
    return os.environ.get("KTRACE_AOT_REUSE", "1") != "0"


def store_dir() -> Path:
    return cache_home() / "lanes" / "aot"


@dataclass(frozen=True)
class Values:
    """What one run fills in: its workload's pid (None: its program has no pid filter) and its
    marker (the stop probe's pid follows from it)."""

    pid: int | None
    marker: str

    def slots(self) -> dict[str, bytes]:
        """Each value's bytes as bpftrace --aot writes them (little-endian immediates)."""
        out = {"marker": self.marker.encode(),
               "stop": struct.pack("<I", aot.stop_pid(self.marker))}
        if self.pid is not None:
            out["pid"] = struct.pack("<I", self.pid)
        return out


def marker_form(marker: str) -> str:
    """The marker with its digits as '#': markers of one form fill the same slots."""
    return re.sub(r"\d", "#", marker)


def sentinel(i: int, marker: str) -> Values:
    """Sentinel `i` (0 or 1) for a run with this marker: the marker's digits replaced by the
    sentinel's (its form kept), the sentinel pid."""
    digits = iter(SENTINEL_DIGITS[i] * (len(marker) // len(SENTINEL_DIGITS[i]) + 1))
    return Values(SENTINEL_PIDS[i], re.sub(r"\d", lambda _: next(digits), marker))


def shape(text_for: Callable[[int], str | None], marker: str) -> str | None:
    """The program's text with holes where the pid and the marker go, or None when it has no
    such form: the text for each sentinel pid, with that pid and the marker made holes, must be
    one and the same text (a pid that also appears elsewhere, or a text that changes otherwise
    with the pid, is no shape)."""
    found = []
    for pid in SENTINEL_PIDS:
        text = text_for(pid)
        if text is None or "\0" in text or marker not in text:
            return None
        found.append(text.replace(marker, MARKER_HOLE).replace(str(pid), PID_HOLE))
    return found[0] if found[0] == found[1] else None


def fill_text(shape_text: str, values: Values) -> str | None:
    if PID_HOLE in shape_text and values.pid is None:
        return None
    return shape_text.replace(PID_HOLE, str(values.pid)).replace(MARKER_HOLE, values.marker)


@dataclass
class Template:
    """A program compiled with sentinel values (`data`, `values`) and where each value's bytes
    are (`slots`: name -> offsets)."""

    data: bytes
    values: Values
    slots: dict[str, list[int]]

    def fill(self, values: Values) -> bytes | None:
        """The program for `values`, or None when they cannot go in its slots."""
        if marker_form(values.marker) != marker_form(self.values.marker):
            return None
        if self.slots.get("pid") and (values.pid is None or not 0 <= values.pid <= MAX_PID):
            return None
        if not 0 <= aot.stop_pid(values.marker) <= MAX_PID:
            return None
        out = bytearray(self.data)
        wanted = values.slots()
        for name, offsets in self.slots.items():
            value = wanted[name]
            for at in offsets:
                out[at:at + len(value)] = value
        return bytes(out)


def _offsets(data: bytes, needle: bytes) -> list[int]:
    found, at = [], data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def template(a: bytes, b: bytes, va: Values, vb: Values) -> Template | str:
    """The template of two compiles of one shape with the sentinels `va` and `vb`, or why
    there is none (see the module's docstring)."""
    if len(a) != len(b):
        return f"the two compiles differ in length ({len(a)} and {len(b)} bytes)"
    slots: dict[str, list[int]] = {}
    taken = bytearray(len(a))  # 1 where a slot is
    sa, sb = va.slots(), vb.slots()
    for name in sa:
        if name not in sb:
            return f"the sentinels differ in which values they have ({name})"
        at_a, at_b = _offsets(a, sa[name]), _offsets(b, sb[name])
        if at_a != at_b:
            return f"the {name}'s bytes are at different places in the two compiles"
        for at in at_a:
            if any(taken[at:at + len(sa[name])]):
                return f"the {name}'s bytes overlap another value's"
            taken[at:at + len(sa[name])] = b"\1" * len(sa[name])
        slots[name] = at_a
    if any(x != y and not t for x, y, t in zip(a, b, taken, strict=True)):
        return "the two compiles differ outside the values' places"
    return Template(a, va, slots)


# --- the store ---------------------------------------------------------------------------------


def key(shape_text: str, marker: str, form: str, facts: str) -> str:
    """A template's name: its text, which text was compiled (`form`: the program, or its
    portable rewrite), the marker's form, and what else decides bpftrace's output (`facts`)."""
    material = json.dumps([FORM, form, shape_text, marker_form(marker), aot.STOP_PROBE, facts])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def machine_facts(bpftrace: str, version: str, formats: list[str]) -> str:
    """What bpftrace --aot reads here besides the program: its own version and file, this
    kernel (its BTF and headers), its BPFTRACE_* settings, the tracepoint formats (`formats`:
    their text, in order)."""
    path = shutil.which(bpftrace) or bpftrace
    try:
        st = os.stat(path)
        ident = [path, st.st_size, int(st.st_mtime)]
    except OSError:
        ident = [path]
    uname = os.uname()
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("BPFTRACE_"))
    return json.dumps([version, ident, uname.release, uname.version, settings, formats])


def load(name: str) -> Template | None:
    try:
        kept = json.loads((store_dir() / f"{name}.json").read_text())
        return Template(base64.b64decode(kept["data"]),
                        Values(kept["pid"], str(kept["marker"])),
                        {k: [int(x) for x in v] for k, v in kept["slots"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(name: str, t: Template) -> None:
    """Written whole (a private name, then a rename): concurrent writers publish equal files."""
    where = store_dir()
    with contextlib.suppress(OSError):
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f"{name}.{os.getpid()}-{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps({"data": base64.b64encode(t.data).decode(), "pid": t.values.pid,
                                   "marker": t.values.marker, "slots": t.slots}))
        tmp.replace(where / f"{name}.json")


class Making:
    """A template being made for a program the run compiled itself: the two sentinel compiles
    run in the background (started by the main thread, collected by `finish` or `cancel`)."""

    def __init__(self, name: str, shape_text: str, run: Values, bpftrace: str) -> None:
        self.name = name
        self.run = run
        self.sentinels = (sentinel(0, run.marker), sentinel(1, run.marker))
        self.compiling: list[aot.Compiling] = []
        for v in self.sentinels:
            text = fill_text(shape_text, v)
            assert text is not None  # a sentinel has a pid
            self.compiling.append(aot.Compiling(text, v.marker, bpftrace))

    def finish(self, own: bytes) -> str:
        """Collect the compiles; keep the template if proven against `own` (the run's compile
        of its values); what happened, for run.json."""
        done: list[aot.Compiled] = [c.result() for c in self.compiling]
        self.compiling = []
        a, b = done
        if a.data is None or b.data is None:
            return f"no template: a sentinel compile failed ({a.refused or b.refused})"
        made = template(a.data, b.data, *self.sentinels)
        if isinstance(made, str):
            return f"no template: {made}"
        if made.fill(self.run) != own:
            return "no template: filled with this run's values, it differs from this run's compile"
        save(self.name, made)
        return "made"

    def cancel(self) -> None:
        for c in self.compiling:
            c.cancel()
        self.compiling = []

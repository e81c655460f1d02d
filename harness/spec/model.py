"""Probe specs: what to trace, which typed arguments to read, which maps to fill.

A spec is the single source of truth: codegen turns it into bpftrace text, and the same spec
names the frames' key columns and value kinds that the libbpf twin's results must match.
Expressions are written against the spec's own argument names (`skb->len`); codegen binds those
names to each attach type's way of reaching the argument (`arg0`, `args->skb`, `args.skbaddr`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from harness.errors import UsageError
from harness.spec.expr import (
    CType,
    Stack,
    bare_args,
    inner_stack,
    names,
    parse,
    parse_ctype,
    stack_of,
    string_value,
)
from harness.spec.keys import BUILTIN_KEYS, COMM_BYTES

ATTACH_TYPES = (
    "kprobe",
    "kretprobe",
    "kfunc",
    "kretfunc",
    "tracepoint",
    "uprobe",
    "uretprobe",
    "profile",
)
ALIASES = {"fentry": "kfunc", "fexit": "kretfunc", "t": "tracepoint", "k": "kprobe"}
FUNCS = ("count", "sum", "avg", "min", "max", "stats", "hist", "lhist", "collect")
# Where a spec's text is a map key (what `collect` collects is its key too).
KEY_OPTIONS = ("--count-by", "--by", "--collect")
MAP_NAME = re.compile(r"^@[A-Za-z_][A-Za-z0-9_]*$|^@$")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
REGISTER = re.compile(r"arg[0-9]")
# What a probe's target may be, per kind: names, paths and wildcards, nothing that could end
# the probe line (a space, '/', '{', ',' outside a path).
TARGETS = {
    "kernel": re.compile(r"[A-Za-z0-9_.*]+"),
    "tracepoint": re.compile(r"[A-Za-z0-9_*]+:[A-Za-z0-9_*]+"),
    "uprobe": re.compile(r"/?[A-Za-z0-9_.+/-]+:[A-Za-z0-9_.*]+"),
    "profile": re.compile(r"(?:hz|s|ms|us):[1-9][0-9]*"),
}
# An off-CPU spec's probe, and the name its values read: the microseconds the thread spent off
# the CPU, known when it comes back (see ProbeSpec.offcpu).
OFFCPU_PROBE = ("tracepoint", "sched:sched_switch")
OFFCPU_US = "offcpu_us"


@dataclass(frozen=True)
class Probe:
    """An attach point: `kprobe:udp_send_skb`, `tracepoint:net:net_dev_queue`, ..."""

    kind: str
    target: str

    @classmethod
    def parse(cls, text: str) -> Probe:
        kind, sep, target = text.partition(":")
        kind = ALIASES.get(kind, kind)
        if not sep or not target or kind not in ATTACH_TYPES:
            raise UsageError(
                f"not a probe: {text!r}",
                "write TYPE:TARGET with TYPE one of "
                + ", ".join(ATTACH_TYPES)
                + " (e.g. kprobe:udp_send_skb, tracepoint:net:net_dev_queue)",
            )
        if kind == "tracepoint" and target.count(":") != 1:
            raise UsageError(
                f"tracepoint needs CATEGORY:NAME, got {target!r}",
                "e.g. tracepoint:net:net_dev_queue (list with bpftrace -l 'tracepoint:net:*')",
            )
        return cls(kind, target)

    def __post_init__(self) -> None:
        family = self.kind if self.kind in ("tracepoint", "uprobe", "profile") else "kernel"
        family = "uprobe" if self.kind == "uretprobe" else family
        if self.kind in ATTACH_TYPES and not TARGETS[family].fullmatch(self.target):
            bad = next(
                (i for i, c in enumerate(self.target) if not re.match(r"[A-Za-z0-9_.*:/+-]", c)),
                None,
            )
            where = f" ({self.target[bad]!r} at column {bad + 1})" if bad is not None else ""
            raise UsageError(
                f"bad {self.kind} target {self.target[:60]!r}{where}",
                "name a function (udp_send_skb), CATEGORY:NAME, /path/to/binary:function, "
                "or a rate for profile (hz:99, ms:10)",
            )

    def text(self, target: str | None = None) -> str:
        return f"{self.kind}:{target or self.target}"


@dataclass(frozen=True)
class Arg:
    """A named, typed probe argument: `skb` is `struct sk_buff *` found at `source`.

    `source` is `argN` (kprobe/uprobe registers), or `args.FIELD` for kfunc and tracepoint
    arguments (written with a dot; codegen emits `args->FIELD` for bpftrace before 0.20).
    """

    name: str
    ctype: str | None
    source: str

    def __post_init__(self) -> None:
        if not IDENT.fullmatch(self.name) or self.name in BUILTIN_KEYS or self.name == "args":
            raise UsageError(
                f"bad --arg name {self.name[:40]!r}",
                "use letters, digits and _ (not a builtin such as comm or pid)",
            )
        field_ok = self.source.startswith("args.") and IDENT.fullmatch(self.source[5:])
        if not (REGISTER.fullmatch(self.source) or field_ok):
            raise UsageError(f"bad argument source {self.source!r}", "use argN or args.FIELD")
        if self.ctype is not None:
            self.parsed_ctype()

    def parsed_ctype(self) -> CType:
        """The declared C type, checked against the type grammar."""
        assert self.ctype is not None
        return parse_ctype(self.ctype, f"--arg {self.name}")


@dataclass(frozen=True)
class Agg:
    """One map: `@name[keys] = func(value)`; `collect` keeps a multiset of the value."""

    map: str
    func: str
    value: str | None = None
    keys: tuple[str, ...] = ()
    key_names: tuple[str, ...] = ()
    lhist: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if not MAP_NAME.match(self.map):
            raise UsageError(f"bad map name {self.map!r}", "use @name (letters, digits, _)")
        if self.func not in FUNCS:
            raise UsageError(f"unknown aggregation {self.func!r}", "use " + ", ".join(FUNCS))
        if self.func != "count" and not self.value:
            raise UsageError(
                f"{self.func} needs a value expression", f"e.g. --{self.func} skb->len"
            )
        if self.func == "lhist" and self.lhist is None:
            raise UsageError("lhist needs MIN:MAX:STEP", "e.g. --lhist skb->len:0:2000:100")
        if self.lhist is not None:
            lo, hi, step = self.lhist
            if step <= 0 or hi <= lo:
                raise UsageError(f"bad lhist range {lo}:{hi}:{step}", "need MIN < MAX and STEP > 0")
        for key in self.keys:
            parse(key, self.key_option())
        if self.value:
            parse(self.value, f"--{self.func}")

    def key_option(self) -> str:
        """The command-line option a key of this map came from (for error messages)."""
        return "--count-by" if self.func == "count" else "--by"

    def expressions(self) -> list[tuple[str, str]]:
        """(option, text) of every expression in this map."""
        out = [(self.key_option(), k) for k in self.keys]
        return out + ([(f"--{self.func}", self.value)] if self.value else [])

    def columns(self) -> list[str]:
        """Key column names of this map's frame (the collected value is the key of `collect`)."""
        keys = (*self.keys, self.value or "") if self.func == "collect" else self.keys
        names = list(self.key_names) or [column_name(k) for k in keys]
        if len(names) != len(keys):
            raise UsageError(f"{self.map}: {len(keys)} keys but {len(names)} names", "")
        return names

    def value_kind(self) -> str:
        """The Output model's value kind this map prints as."""
        return {"stats": "stats", "hist": "hist", "lhist": "lhist"}.get(self.func, "int")

    def frame_columns(self) -> list[str]:
        """Every column of this map's frame and CSV: keys, then the value columns of its kind
        (what an empty map's header-only CSV still says)."""
        values = {"stats": ["count", "average", "total"], "hist": ["lo", "hi", "count"],
                  "lhist": ["lo", "hi", "count"]}.get(self.value_kind(), ["value"])
        return [*self.columns(), *values]


def column_name(expr: str) -> str:
    """`kstack` -> kstack; `skb->hash` -> hash; `args.len` -> len; other text -> a safe name."""
    stack = stack_of(parse(expr)) if expr.strip() else None
    if stack is not None:  # kstack(perf, 8) is a kstack column
        return stack.kind
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr)
    return words[-1] if words else "key"


@dataclass(frozen=True)
class ProbeSpec:
    """Everything codegen needs for one probe, and everything frames need to name columns.

    `offcpu` makes it an off-CPU spec (BCC's offcputime): the probe is sched:sched_switch, the
    filters and map keys are read for the thread leaving the CPU (its stacks are where it
    blocked), and the map values may read `offcpu_us`, the microseconds until it is switched back
    in; a period that begins or ends outside the run is not counted.
    """

    probe: Probe
    aggs: tuple[Agg, ...]
    args: tuple[Arg, ...] = ()
    predicates: tuple[str, ...] = ()
    pid: int | None = None
    workload_pid: bool = False
    comm: str | None = None
    cgroup: str | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)
    offcpu: bool = False

    def __post_init__(self) -> None:
        if not self.aggs:
            raise UsageError("the spec fills no map", "add e.g. --count-by kstack")
        seen = [a.map for a in self.aggs]
        if len(set(seen)) != len(seen):
            raise UsageError(f"map names repeat: {seen}", "give each aggregation its own map")
        if self.pid is not None and not 0 < self.pid < 1 << 31:
            raise UsageError(f"bad --pid {self.pid}", "a pid is a positive 32-bit number")
        for what, value in (("--comm", self.comm), ("--cgroup", self.cgroup)):
            if value is not None:
                string_value(what, value)
        if self.comm is not None and len(self.comm.encode()) > COMM_BYTES:
            kept = self.comm.encode()[:COMM_BYTES].decode(errors="ignore")
            raise UsageError(
                f"--comm {self.comm!r} is {len(self.comm.encode())} bytes, but the kernel keeps "
                f"only the first {COMM_BYTES} of a command name, so it would match nothing",
                f"pass --comm {kept!r}",
            )
        allowed = {a.name for a in self.args} | set(BUILTIN_KEYS) | {"args"}
        if self.offcpu:
            self._check_offcpu()
        for what, text in self.expressions():
            tree = parse(text, what)
            used = names(tree)
            in_value = self.offcpu and what.startswith("--") and what[2:] in FUNCS
            unknown = sorted(
                n for n in used
                if n not in allowed and not REGISTER.fullmatch(n)
                and not (in_value and n == OFFCPU_US)
            )
            if unknown:
                raise UsageError(
                    f"{what} {text[:60]!r}: unknown name {unknown[0]!r}",
                    "declare it with --arg NAME=TYPE, or use a builtin ("
                    + ", ".join(BUILTIN_KEYS) + ", argN, args.FIELD)",
                )
            if bare_args(tree):
                raise UsageError(f"{what} {text[:60]!r}: 'args' alone", "write args.FIELD")
            if inner_stack(tree) or (isinstance(tree, Stack) and what not in KEY_OPTIONS):
                raise UsageError(f"{what} {text[:60]!r}: a kstack()/ustack() is a whole map key",
                                 "key a map by it: --count-by 'kstack(perf, 8)'")

    def _check_offcpu(self) -> None:
        """An off-CPU spec traces sched_switch, and its values read only `offcpu_us` (they are
        computed for the thread coming back, when nothing else of the thread leaving is at hand)."""
        if (self.probe.kind, self.probe.target) != OFFCPU_PROBE:
            raise UsageError(
                f"an off-CPU spec traces {':'.join(OFFCPU_PROBE)}, not {self.probe.text()}",
                "use the catalog entry: harness run offcpu",
            )
        for agg in self.aggs:
            used = names(parse(agg.value, f"--{agg.func}")) if agg.value else set()
            if used - {OFFCPU_US}:
                raise UsageError(
                    f"{agg.map}: an off-CPU value may read only {OFFCPU_US}, not "
                    f"{', '.join(sorted(used - {OFFCPU_US}))}",
                    "key the map by what the leaving thread has (comm, kstack, ustack, ...)",
                )

    def expressions(self) -> list[tuple[str, str]]:
        """(option, text) of every expression in the spec: map keys, values, predicates."""
        out = [pair for agg in self.aggs for pair in agg.expressions()]
        return out + [("--filter", p) for p in self.predicates]

    @property
    def attach_type(self) -> str:
        return self.probe.kind

    def key_names(self) -> dict[str, list[str]]:
        """Map name -> key column names, e.g. {'@stacks': ['kstack'], '@len': []}."""
        return {a.map: a.columns() for a in self.aggs}

    def frame_columns(self) -> dict[str, list[str]]:
        """Map name -> every column its frame has, e.g. {'@stacks': ['kstack', 'value']}."""
        return {a.map: a.frame_columns() for a in self.aggs}

    def value_kind(self, map_name: str) -> str:
        for agg in self.aggs:
            if agg.map == map_name:
                return agg.value_kind()
        raise UsageError(f"no map {map_name} in this spec", f"maps: {list(self.key_names())}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (run.json's `spec`): every field, expressions as the text that
        `from_dict` parses again, so `ProbeSpec.from_dict(s.to_dict()) == s`."""
        return {
            "probe": {"kind": self.probe.kind, "target": self.probe.target},
            "aggs": [
                {
                    "map": a.map,
                    "func": a.func,
                    "value": a.value,
                    "keys": list(a.keys),
                    "key_names": list(a.key_names),
                    "lhist": list(a.lhist) if a.lhist is not None else None,
                }
                for a in self.aggs
            ],
            "args": [{"name": a.name, "ctype": a.ctype, "source": a.source} for a in self.args],
            "predicates": list(self.predicates),
            "pid": self.pid,
            "workload_pid": self.workload_pid,
            "comm": self.comm,
            "cgroup": self.cgroup,
            "notes": list(self.notes),
            "offcpu": self.offcpu,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeSpec:
        """The spec `to_dict` wrote (e.g. run.json's `spec`), validated as a new spec is: every
        expression is parsed again. Malformed data is a one-line UsageError."""
        try:
            d = _fields_of(cls, data, "spec", required=("probe", "aggs"))
            probe = _fields_of(Probe, d["probe"], "spec.probe", required=("kind", "target"))
            aggs = []
            for i, raw in enumerate(_list(d["aggs"], "spec.aggs")):
                a = _fields_of(Agg, raw, f"spec.aggs[{i}]", required=("map", "func"))
                lhist = a.get("lhist")
                aggs.append(
                    Agg(
                        _text(a["map"]),
                        _text(a["func"]),
                        _opt_text(a.get("value")),
                        tuple(_text(k) for k in _list(a.get("keys", []), "keys")),
                        tuple(_text(k) for k in _list(a.get("key_names", []), "key_names")),
                        None if lhist is None else _lhist(lhist),
                    )
                )
            args = [
                _fields_of(Arg, raw, f"spec.args[{i}]", required=("name", "source"))
                for i, raw in enumerate(_list(d.get("args", []), "spec.args"))
            ]
            pid = d.get("pid")
            if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
                raise TypeError(f"pid {pid!r} is not an integer")
            workload_pid = d.get("workload_pid", False)
            offcpu = d.get("offcpu", False)
            for flag, value in (("workload_pid", workload_pid), ("offcpu", offcpu)):
                if not isinstance(value, bool):
                    raise TypeError(f"{flag} {value!r} is not true/false")
            return cls(
                Probe(_text(probe["kind"]), _text(probe["target"])),
                tuple(aggs),
                tuple(
                    Arg(_text(a["name"]), _opt_text(a.get("ctype")), _text(a["source"]))
                    for a in args
                ),
                tuple(_text(p) for p in _list(d.get("predicates", []), "spec.predicates")),
                pid,
                workload_pid,
                _opt_text(d.get("comm")),
                _opt_text(d.get("cgroup")),
                tuple(_text(n) for n in _list(d.get("notes", []), "spec.notes")),
                offcpu,
            )
        except TypeError as err:
            raise UsageError(
                f"not a probe spec: {err}", "pass the `spec` object of a harness run.json"
            ) from None


def _fields_of(
    kind: type, data: Any, where: str, required: tuple[str, ...]
) -> dict[str, Any]:
    """`data` as a dict holding only `kind`'s field names, and at least `required`."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} is {type(data).__name__}, not an object")
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(data) - known)
    missing = [k for k in required if k not in data]
    if unknown or missing:
        what = f"unknown field {unknown[0]!r}" if unknown else f"no field {missing[0]!r}"
        raise TypeError(f"{where} has {what}")
    return dict(data)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"{where} is {type(value).__name__}, not a list")
    return list(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _lhist(value: Any) -> tuple[int, int, int]:
    parts = _list(value, "lhist")
    if len(parts) != 3 or not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        raise TypeError(f"lhist {value!r} is not [MIN, MAX, STEP]")
    return parts[0], parts[1], parts[2]

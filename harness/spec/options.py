"""The spec options of one probe line, typed: what `--count-by`, `--hist`, `--filter`... ask for.

One dataclass is the single source of truth for the command line and the library: the CLI's
flags are made from its fields (`add_flags`), `harness.trace(probe, count_by="kstack")`
checks its keywords against them (`SpecOptions.from_keywords`, no argparse on that path), and
both become a ProbeSpec through `to_spec`, in the spirit of BCC's stackcount, funccount and
argdist:

    harness run kprobe:udp_send_skb --arg skb='struct sk_buff *' --count-by kstack
    harness run tracepoint:net:net_dev_queue --hist args.len --by comm --filter 'args.len > 100'

Arguments of kprobes/uprobes are bound to registers in order (`--arg` N binds argN-1); for kfunc
and tracepoints write `args.FIELD` (codegen emits `args->FIELD` for older bpftrace).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from harness import arguments
from harness.errors import UsageError
from harness.spec.keys import BUILTIN_KEYS

if TYPE_CHECKING:  # the model (and its expression grammar) loads only when a spec is built
    from harness.spec.model import Arg, Probe, ProbeSpec

VALUE_FUNCS = ("sum", "avg", "min", "max", "stats", "hist", "collect")


def _many(metavar: str, help: str) -> Any:
    """A flag that repeats: a tuple of strings (a keyword takes a string or a list of them)."""
    return field(default=(), metadata={"metavar": metavar, "help": help})


def _one(metavar: str | None, help: str, *flags: str) -> Any:
    return field(default=None, metadata={"metavar": metavar, "help": help, "flags": flags})


@dataclass(frozen=True)
class SpecOptions:
    """The options; a field's metadata is its flag's help. Keywords use `_` for the flag's `-`."""

    arg: tuple[str, ...] = _many(
        "NAME=TYPE", "name and C type of the next argument, e.g. skb='struct sk_buff *'")
    count_by: tuple[str, ...] = _many(
        "KEY", f"count events by KEY ({', '.join(BUILTIN_KEYS[:6])}, or an expression)")
    sum: tuple[str, ...] = _many("EXPR", "sum of EXPR over the events, e.g. skb->len (a map @sum)")
    avg: tuple[str, ...] = _many("EXPR", "integer average of EXPR (a map @avg)")
    min: tuple[str, ...] = _many("EXPR", "smallest EXPR seen (a map @min)")
    max: tuple[str, ...] = _many("EXPR", "largest EXPR seen (a map @max)")
    stats: tuple[str, ...] = _many("EXPR", "count, average and total of EXPR (a map @stats)")
    hist: tuple[str, ...] = _many("EXPR", "power-of-two histogram of EXPR (a map @hist)")
    collect: tuple[str, ...] = _many(
        "EXPR", "how often each value of EXPR occurs, e.g. skb->hash (a map @collect)")
    lhist: tuple[str, ...] = _many(
        "EXPR:MIN:MAX:STEP",
        "linear histogram of EXPR in STEP-wide buckets, e.g. skb->len:0:2000:100")
    by: tuple[str, ...] = _many(
        "KEY", "keys of the value maps above, e.g. --by comm or --by comm,kstack")
    filter: tuple[str, ...] = _many(
        "PRED", "only events where PRED holds, e.g. 'skb->len > 100' (repeat to AND)")
    pid: int | None = _one(None, "only events of this process id", "-p", "--pid")
    comm: str | None = _one(None, "only events of this command name (as in /proc/PID/comm)")
    cgroup: str | None = _one(None, "only events in this cgroup (path under /sys/fs/cgroup)")
    workload_pid: bool = field(
        default=False, metadata={"help": "only the workload's pid (needs --workload)"})

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_keywords(cls, options: Mapping[str, Any]) -> SpecOptions:
        """`count_by="kstack"`, `by=["comm", "kstack"]`, `pid=42`... checked one by one: a wrong
        name or type is a UsageError naming the keyword."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise UsageError(
                f"unknown spec option(s): {', '.join(unknown)}",
                f"use any of: {', '.join(sorted(cls.names()))}",
            )
        typed: dict[str, Any] = {
            name: _keyword(name, value, cls.__dataclass_fields__[name].default)
            for name, value in options.items()
        }
        return cls(**typed)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> SpecOptions:
        """The options of a command line parsed with `add_flags`."""
        given: dict[str, Any] = {
            name: tuple(value) if isinstance(value, list) else value
            for name in cls.names() for value in [getattr(args, name)]
        }
        return cls(**given)

    def given(self) -> dict[str, Any]:
        """The options set to something else than their default, as keywords."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    def to_spec(self, probe_text: str) -> ProbeSpec:
        """The spec these options ask for on `probe_text`; every map is named after its
        function (`@count`, `@hist`, a second `--hist` is `@hist2`)."""
        from harness.spec.model import Agg, Probe, ProbeSpec

        probe = Probe.parse(probe_text)
        by = split_keys(self.by)
        aggs: list[Agg] = []
        if self.count_by:
            aggs.append(Agg("@count", "count", keys=split_keys(self.count_by)))
        for func in VALUE_FUNCS:
            for i, expr in enumerate(getattr(self, func)):
                name = f"@{func}" if i == 0 else f"@{func}{i + 1}"
                aggs.append(Agg(name, func, value=expr, keys=() if func == "collect" else by))
        for i, item in enumerate(self.lhist):
            expr, bounds = _lhist(item)
            aggs.append(Agg(f"@lhist{i + 1 if i else ''}", "lhist", value=expr, keys=by,
                            lhist=bounds))
        if not aggs:
            aggs.append(Agg("@count", "count", keys=by))
        return ProbeSpec(
            probe,
            tuple(aggs),
            _args(probe, self.arg),
            predicates=tuple(self.filter),
            pid=self.pid,
            workload_pid=self.workload_pid,
            comm=self.comm,
            cgroup=self.cgroup,
        )


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The options as command-line flags, one per field."""
    group = parser.add_argument_group("probe spec (when TARGET is a probe)")
    for f in fields(SpecOptions):
        flags = f.metadata.get("flags") or (f"--{f.name.replace('_', '-')}",)
        help_ = f.metadata["help"]
        if f.default == ():
            group.add_argument(*flags, action="append", default=[],
                               metavar=f.metadata["metavar"], help=help_)
        elif isinstance(f.default, bool):
            group.add_argument(*flags, action="store_true", help=help_)
        elif f.name == "pid":
            group.add_argument(*flags, type=int, help=help_)
        else:
            group.add_argument(*flags, help=help_)


def _keyword(name: str, value: Any, default: Any) -> Any:
    """One keyword, typed as its flag: a repeatable flag takes a string or a list of strings, a
    switch True/False, `pid` an integer, the others a string; None means unset."""
    if default == ():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise UsageError(
                f"{name}={value!r:.60} is neither a string nor a list of strings",
                f"pass e.g. {name}='comm' or {name}=['comm', 'kstack']",
            )
        return tuple(arguments.string(f"{name}[{i}]", item, "'comm'")
                     for i, item in enumerate(items))
    if isinstance(default, bool):
        return arguments.flag(name, value)
    if value is None:
        return None
    if name == "pid":
        return arguments.integer(name, value, 1, "1234")
    return arguments.string(name, value, "'bash'")


def _args(probe: Probe, items: tuple[str, ...]) -> tuple[Arg, ...]:
    from harness.spec.model import Arg

    out = []
    for i, item in enumerate(items):
        name, sep, ctype = item.partition("=")
        if not sep or not name.isidentifier() or not ctype.strip():
            raise UsageError(f"bad --arg {item!r}", "write NAME=TYPE, e.g. skb='struct sk_buff *'")
        typed = probe.kind in ("kfunc", "kretfunc", "tracepoint")
        source = f"args.{name}" if typed else f"arg{i}"
        out.append(Arg(name, ctype.strip(), source))
    return tuple(out)


def _lhist(item: str) -> tuple[str, tuple[int, int, int]]:
    expr, *bounds = item.rsplit(":", 3)
    try:
        lo, hi, step = (int(b) for b in bounds)
    except ValueError:
        raise UsageError(
            f"bad --lhist {item!r}", "write EXPR:MIN:MAX:STEP, e.g. skb->len:0:2000:100"
        ) from None
    return expr, (lo, hi, step)


def split_keys(items: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`--count-by ustack,kstack` (and repeated flags) -> one key per part.

    Commas inside parentheses, brackets or string literals belong to the expression.
    """
    keys: list[str] = []
    for item in items:
        depth, quote, start = 0, "", 0
        for i, ch in enumerate(item):
            if quote:
                quote = "" if ch == quote and item[i - 1] != "\\" else quote
            elif ch in "\"'":
                quote = ch
            elif ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "," and depth == 0:
                keys.append(item[start:i].strip())
                start = i + 1
        keys.append(item[start:].strip())
    if any(not k for k in keys):
        raise UsageError(f"empty key in {', '.join(items)!r}",
                         "separate keys with one comma, e.g. --count-by comm,kstack")
    return tuple(keys)

"""ProbeSpec -> bpftrace program text for the installed bpftrace version.

The program's BEGIN prints a marker line: bpftrace says "Attaching N probes..." before they are
live, so the runner starts the workload on the marker instead. Argument names in expressions are
bound per attach type and version: kprobe registers are cast to the declared C type; kfunc and
tracepoint fields are `args->f` before bpftrace 0.20 and `args.f` from then on (`args` became a
record in 0.18, and 0.19 still mishandled some tracepoint fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from harness.errors import UsageError
from harness.spec import expr
from harness.spec.model import OFFCPU_US, Agg, Arg, ProbeSpec

ARGS_DOT_SINCE = (0, 20, 0)
# delete() returns whether it deleted, and warns when that is dropped, since bpftrace 0.24.
DELETE_RETURNS_SINCE = (0, 24, 0)
# What a dry run prints where the workload's pid goes: it is known only once the workload starts.
WORKLOAD_PID = "WORKLOAD_PID"


class MemberLayout(Protocol):
    """A struct member as one kernel lays it out (harness.lanes.btf.Field is one)."""

    @property
    def offset(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def signed(self) -> bool: ...
    @property
    def kind(self) -> str: ...  # 'int', 'enum' or 'ptr'


@dataclass
class FieldOffsets:
    """The field offsets of the kernel a program is compiled for ahead of time: bpftrace --aot
    refuses every cast, so with these codegen writes each member read through a cast of a
    register, `((struct sk_buff *)arg0)->hash`, as the same read without one,
    `(*(arg0 + 148) & 0xffffffff)` (an 8-byte read of a little-endian kernel's memory, masked
    to the member's size), at the offset `layout(struct, member)` gives.

    `placed` says what was moved where; `refused` why a member could not be (absent from that
    kernel, a pointer, signed, odd-sized: its cast stays, and bpftrace --aot refuses it);
    `asked` every member read through a cast."""

    layout: Callable[[str, str], MemberLayout | None]
    placed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def read(self, struct: str, member: str, pointer: str) -> str | None:
        self.asked.append((struct, member))
        f = self.layout(struct, member)
        if f is None or f.kind == "ptr" or f.signed or f.size not in (1, 2, 4, 8):
            said = "not in its BTF" if f is None else (
                "a pointer" if f.kind == "ptr" else "signed" if f.signed else "odd-sized")
            self.refused.append(f"{struct}.{member} is {said}")
            return None
        self.placed.append(f"{struct}.{member} at +{f.offset} ({f.size} bytes)")
        if f.size == 8:
            return f"(*({pointer} + {f.offset}))"
        return f"(*({pointer} + {f.offset}) & {(1 << (8 * f.size)) - 1:#x})"

    def said(self) -> str:
        """What moved where ('sk_buff.hash at +148 (4 bytes), ...'), or why not."""
        return "; ".join(dict.fromkeys(self.refused)) or ", ".join(dict.fromkeys(self.placed))


def binding(arg: Arg) -> expr.Node:
    """The tree that reaches one spec argument: a register (`arg0`) or a field (`args.skb`),
    cast to the declared C type when there is one."""
    source: expr.Node = (
        expr.Field(expr.Name("args"), arg.source[len("args."):], arrow=False)
        if arg.source.startswith("args.")
        else expr.Name(arg.source)
    )
    return expr.Cast(arg.parsed_ctype(), source) if arg.ctype else source


def bind(arg: Arg, version: tuple[int, int, int]) -> str:
    """The bpftrace expression that reaches one spec argument on this version."""
    return expr.to_bpftrace(binding(arg), {}, version >= ARGS_DOT_SINCE, top=False)


def expression(
    text: str, args: tuple[Arg, ...], version: tuple[int, int, int], what: str = "expression",
    offsets: FieldOffsets | None = None,
) -> str:
    """Spec text -> bpftrace text: parsed, argument names bound, re-emitted (never pasted);
    with `offsets`, member reads through casts at those offsets (FieldOffsets)."""
    bindings = {arg.name: binding(arg) for arg in args}
    return expr.to_bpftrace(expr.parse(text, what), bindings, version >= ARGS_DOT_SINCE,
                            reads=offsets)


def _statement(
    agg: Agg,
    args: tuple[Arg, ...],
    version: tuple[int, int, int],
    keys: list[str] | None = None,
    value: str | None = None,
    offsets: FieldOffsets | None = None,
) -> str:
    """`@map[keys] = func(value);` with keys and value from the spec (or given, as emitted)."""
    if keys is None:
        keys = [expression(k, args, version, agg.key_option(), offsets) for k in agg.keys]
    if value is None:
        value = expression(agg.value, args, version, f"--{agg.func}", offsets) \
            if agg.value else ""
    if agg.func == "collect":
        keys.append(value)
        call = "count()"
    elif agg.func == "lhist":
        assert agg.lhist is not None
        lo, hi, step = agg.lhist
        call = f"lhist({value}, {lo}, {hi}, {step})"
    elif agg.func == "count":
        call = "count()"
    else:
        call = f"{agg.func}({value})"
    index = f"[{', '.join(keys)}]" if keys else ""
    return f"  {agg.map}{index} = {call};"


def predicate(spec: ProbeSpec, pid: int | str | None, version: tuple[int, int, int],
              offsets: FieldOffsets | None = None) -> str:
    """The `/.../` filter: pid (given, or the workload's), comm, cgroup, and free predicates.
    `pid` may be WORKLOAD_PID, the dry run's stand-in for a pid not known yet."""
    parts = conditions(spec, pid, version, offsets)
    return f" /{' && '.join(parts)}/" if parts else ""


def conditions(spec: ProbeSpec, pid: int | str | None, version: tuple[int, int, int],
               offsets: FieldOffsets | None = None) -> list[str]:
    """The filter's conditions, each as bpftrace text, to be joined with &&."""
    parts = []
    target_pid = spec.pid if spec.pid is not None else (pid if spec.workload_pid else None)
    if spec.workload_pid and target_pid is None:
        raise UsageError(
            "this spec filters on the workload's pid but no workload was given",
            "pass --workload CMD (or drop the pid filter)",
        )
    if target_pid == WORKLOAD_PID:
        parts.append(f"pid == {WORKLOAD_PID}")
    elif target_pid is not None:
        parts.append(f"pid == {int(target_pid)}")
    if spec.comm:
        parts.append(f"comm == {expr.quote(expr.string_value('--comm', spec.comm))}")
    if spec.cgroup:
        path = expr.quote(expr.string_value("--cgroup", spec.cgroup))
        parts.append(f"cgroup == cgroupid({path})")
    parts += [f"({expression(p, spec.args, version, '--filter', offsets)})"
              for p in spec.predicates]
    return parts


def generate(
    spec: ProbeSpec,
    attach: str | None = None,
    bpftrace_version: tuple[int, int, int] = (0, 17, 0),
    marker: str = "KTRACE_READY",
    pid: int | str | None = None,
    symbol: str | None = None,
    offsets: FieldOffsets | None = None,
) -> str:
    """The whole program. `symbol` overrides the kernel function (a resolved clone name);
    `offsets` writes member reads through casts as reads at a kernel's offsets (bpftrace --aot
    refuses casts; FieldOffsets)."""
    if attach is not None and attach != spec.probe.kind:
        raise UsageError(
            f"spec is for {spec.probe.kind}, not {attach}",
            "pick the catalog entry's equivalent for that attach type",
        )
    if not re.fullmatch(r"[A-Za-z0-9_]+", marker):
        raise UsageError(f"bad marker {marker!r}", "use letters, digits and _ only")
    if spec.offcpu:
        return _offcpu(spec, bpftrace_version, marker, pid, offsets)
    body = "\n".join(_statement(a, spec.args, bpftrace_version, offsets=offsets)
                     for a in spec.aggs)
    return (
        f'BEGIN {{ printf("{marker}\\n"); }}\n'
        f"{spec.probe.text(symbol)}{predicate(spec, pid, bpftrace_version, offsets)}\n"
        f"{{\n{body}\n}}\n"
    )


OFFCPU_STATE = "@_offcpu_"  # the off-CPU program's own maps: start times and keys per thread


def _offcpu(
    spec: ProbeSpec, version: tuple[int, int, int], marker: str, pid: int | str | None,
    offsets: FieldOffsets | None = None,
) -> str:
    """An off-CPU spec's program, two sched_switch probes (BCC's offcputime from a tracepoint).

    The event runs in the thread leaving the CPU (`prev`): where the spec's filter holds, it
    keeps the time and the map keys (its stacks show where it blocked), per thread id. When that
    thread is switched back in (`next_pid` of a later event, in whichever thread leaves then),
    the maps are filled with `offcpu_us`, the microseconds in between (whole ones, like BCC's),
    and its entry is dropped. The swapper (tid 0) is never counted. The leaving probe comes
    first: bpftrace 0.17 types a map where it is first assigned. END empties the program's own
    maps so the exit dump prints only the spec's."""
    args_dot = version >= ARGS_DOT_SINCE
    nxt = expr.to_bpftrace(expr.Field(expr.Name("args"), "next_pid", arrow=False), {}, args_dot)
    start = f"{OFFCPU_STATE}start"
    key_texts: list[str] = []  # distinct key expressions as bpftrace text, each kept per thread
    for agg in spec.aggs:
        for k in agg.keys:
            text = expression(k, spec.args, version, agg.key_option(), offsets)
            if text not in key_texts:
                key_texts.append(text)
    kept = {text: f"{OFFCPU_STATE}key{i}" for i, text in enumerate(key_texts)}
    leaving = [f"  {start}[tid] = nsecs;"] + [f"  {m}[tid] = {t};" for t, m in kept.items()]
    value = f"${OFFCPU_US}"
    bound: dict[str, expr.Node] = {OFFCPU_US: expr.Name(value)}
    # Signed operands, cast explicitly: newer releases warn about each implicit cast.
    back = [f"  {value} = (uint64)((int64)nsecs - (int64){start}[{nxt}]) / 1000;"]
    for agg in spec.aggs:
        keys = [
            f"{kept[expression(k, spec.args, version, agg.key_option(), offsets)]}[{nxt}]"
            for k in agg.keys
        ]
        val = expr.to_bpftrace(expr.parse(agg.value, f"--{agg.func}"), bound, args_dot,
                               reads=offsets) if agg.value else ""
        back.append(_statement(agg, spec.args, version, keys, val))
    own = [start, *kept.values()]
    drop = "  if (delete({})) {{}}" if version >= DELETE_RETURNS_SINCE else "  delete({});"
    back += [drop.format(f"{m}[{nxt}]") for m in own]
    where = " && ".join([*conditions(spec, pid, version, offsets), "tid != 0"])
    return (
        f'BEGIN {{ printf("{marker}\\n"); }}\n'
        f"{spec.probe.text()} /{where}/\n{{\n" + "\n".join(leaving) + "\n}\n"
        f"{spec.probe.text()} /{start}[{nxt}]/\n{{\n" + "\n".join(back) + "\n}\n"
        "END {\n" + "\n".join(f"  clear({m});" for m in own) + "\n}\n"
    )

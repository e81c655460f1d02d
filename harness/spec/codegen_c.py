"""ProbeSpec -> the libbpf CO-RE twin: one .bpf.c from the same parsed expressions as bpftrace.

The generated file is meant to be read: a header lists the spec, each map has a comment naming
the spec line it implements, each block in the handler says which map it fills. Every map is a
per-CPU hash (as bpftrace's own count/sum maps are) summed by the loader's reader, so two CPUs
that see the same new key at once both count: the loser of the BPF_NOEXIST insert finds the
winner's element on its second lookup (the hand-written twin lost that event).

Semantics follow bpftrace 0.17: log2 slots with 0 and negatives, lhist's open ends, `/` `%`
`>>` unsigned, `comm == "x"` comparing through the literal's NUL, pid = tgid. What has no twin
yet (wildcard probes, strings other than comm, `func`) is a one-line UsageError naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import UsageError
from harness.spec import expr
from harness.spec.model import REGISTER, Agg, Arg, ProbeSpec

TWIN_KINDS = ("kprobe", "kretprobe", "kfunc", "kretfunc", "tracepoint", "uprobe", "uretprobe")
MAX_STACK = expr.MAX_FRAMES
COMM_LEN = 16
MAP_ENTRIES = 10240
STACK_ENTRIES = 16384
DROPS_MAP = "twin_drops"
STACKS_MAP = "twin_stacks"
PROG_NAME = "twin_probe"
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class NoTwin(UsageError):
    """The spec uses something the C generator cannot express yet."""


def no_twin(what: str) -> NoTwin:
    return NoTwin(
        f"{what} has no libbpf twin yet",
        "crosscheck a spec without it (harness run still traces it with bpftrace)",
    )


# --- tracepoint records ------------------------------------------------------------------------


@dataclass(frozen=True)
class TracepointField:
    """One field of a tracepoint record, from its `format` file."""

    name: str
    offset: int
    size: int
    signed: bool
    scalar: bool  # an integer or pointer (readable as a number); arrays and __data_loc are not


_FIELD = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<sig>\d)"
)


def parse_tracepoint_format(text: str) -> list[TracepointField]:
    """The record layout bpftrace also reads (`args.F`), common_* fields left out."""
    out = []
    for m in _FIELD.finditer(text):
        decl = m.group("decl").strip()
        names = IDENT.findall(re.sub(r"\[[^\]]*\]", "", decl))  # `char[] name`, `u8 a[6]`
        if not names or names[-1].startswith("common_"):
            continue
        size = int(m.group("size"))
        scalar = "[" not in decl and "__data_loc" not in decl and size in (1, 2, 4, 8)
        out.append(
            TracepointField(names[-1], int(m.group("off")), size, m.group("sig") == "1", scalar)
        )
    return sorted(out, key=lambda f: f.offset)


# --- what the loader's reader needs to decode each map -----------------------------------------


@dataclass(frozen=True)
class KeyField:
    """One member of a map's key struct. kind: int, comm, kstack, ustack (id + pid), slot, pad."""

    kind: str
    c_name: str
    column: str | None = None  # the frame column it fills (None: slot / padding)
    # kstack/ustack: the spec's stack key as parsed (print mode, frame limit); None elsewhere
    stack: expr.Stack | None = None

    @property
    def size(self) -> int:
        return {"comm": COMM_LEN, "ustack": 16}.get(self.kind, 8)

    @property
    def stack_map(self) -> str:
        """The stack-trace map the key's id resolves in ("": STACKS_MAP)."""
        return stacks_map(self.stack.limit) if self.stack is not None else ""

    @property
    def mode(self) -> str:
        """How bpftrace prints the stack's frames (expr.STACK_MODES)."""
        return self.stack.mode if self.stack is not None else "bpftrace"

    @property
    def depth(self) -> int:
        """Frames the stack holds: its limit, else as deep as the kernel walks."""
        limit = self.stack.limit if self.stack is not None else None
        return MAX_STACK if limit is None else limit


@dataclass(frozen=True)
class TwinMap:
    """One spec map as the twin holds it: BPF map name, key layout, value layout by `func`."""

    spec_map: str
    bpf_name: str
    func: str
    keys: tuple[KeyField, ...]
    lhist: tuple[int, int, int] | None = None
    describe: str = ""  # the spec line it implements, e.g. `@count[comm] = count()`

    @property
    def value_size(self) -> int:
        return 16 if self.func in ("min", "max", "avg", "stats") else 8

    @property
    def columns(self) -> list[str]:
        return [k.column for k in self.keys if k.column is not None]


@dataclass(frozen=True)
class TwinProgram:
    """The generated C, its maps, and the rodata settings the loader must fill in."""

    text: str
    maps: tuple[TwinMap, ...]
    settings: tuple[str, ...] = ()  # target_pid, target_cgroup
    probe: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# --- expressions -------------------------------------------------------------------------------


@dataclass
class _Scope:
    """What names mean inside the handler of one probe kind."""

    spec: ProbeSpec
    tp_fields: dict[str, TracepointField]
    uses_comm: bool = False
    uses_pid_tgid: bool = False
    uses_ret: bool = False
    record_reads: dict[str, str] = field(default_factory=dict)  # args.F -> its C declaration

    @property
    def kind(self) -> str:
        return self.spec.probe.kind

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.spec.args if a.name == name), None)


def _c_int(value: int) -> str:
    return f"{value}LL" if value < 1 << 63 else f"(__s64){value}ULL"


def _var(arg: Arg) -> str:
    return f"arg_{arg.name}"


def _args_field(name: str, scope: _Scope) -> str:
    """`args.NAME`: a tracepoint record field, or a kfunc parameter declared with --arg."""
    if scope.kind == "tracepoint":
        f = scope.tp_fields.get(name)
        if f is None:
            known = ", ".join(scope.tp_fields) or "none"
            raise UsageError(
                f"{scope.spec.probe.text()} has no field args.{name}", f"its fields: {known}"
            )
        if not f.scalar:
            raise no_twin(f"args.{name} (an array or string field)")
        # Read once into a local: inside BPF_CORE_READ(...) a record access would become a
        # CO-RE relocation against a struct the kernel's BTF does not have.
        ctype = f"__{'s' if f.signed else 'u'}{f.size * 8}"
        scope.record_reads[name] = f"\tconst {ctype} args_{name} = ctx->{name};"
        return f"args_{name}"
    if scope.kind in ("kfunc", "kretfunc"):
        arg = next((a for a in scope.spec.args if a.source == f"args.{name}"), None)
        if arg is None:
            raise UsageError(
                f"args.{name}: no --arg declares it",
                f"declare the parameters in order, e.g. --arg {name}='struct sk_buff *'",
            )
        return _var(arg)
    raise UsageError(f"args.{name} on a {scope.kind}", "use the --arg names (or argN)")


def _name(node: expr.Name, scope: _Scope) -> str:
    """A name as a C integer expression."""
    n = node.id
    arg = scope.arg(n)
    if arg is not None:
        if scope.kind in ("kretprobe", "uretprobe"):
            raise UsageError(f"{n}: arguments are not readable in a {scope.kind}", "use retval")
        if arg.source.startswith("args.") and scope.kind == "tracepoint":
            field = _args_field(arg.source[len("args.") :], scope)
            if arg.ctype:  # a record field declared as a typed pointer (skbaddr -> sk_buff)
                return f"(({arg.parsed_ctype().text()})(unsigned long){field})"
            return field
        return _var(arg)
    if REGISTER.fullmatch(n):
        i = int(n[3:])
        if scope.kind in ("kprobe", "uprobe") and i < 5:
            return f"PT_REGS_PARM{i + 1}(ctx)"
        if scope.kind in ("kfunc", "kretfunc"):
            return f"ctx[{i}]"
        raise UsageError(f"{n} on a {scope.kind}", "argN exists on kprobe/uprobe (N < 5)")
    if n in ("pid", "tid"):
        scope.uses_pid_tgid = True
        return "(pid_tgid >> 32)" if n == "pid" else "(__u32)pid_tgid"
    if n == "cpu":
        return "bpf_get_smp_processor_id()"
    if n == "cgroup":
        return "bpf_get_current_cgroup_id()"
    if n == "retval":
        if scope.kind in ("kretprobe", "uretprobe"):
            return "PT_REGS_RC(ctx)"
        if scope.kind == "kretfunc":
            scope.uses_ret = True
            return "ret"
        raise UsageError(f"retval on a {scope.kind}", "retval exists on return probes")
    if n in ("comm", "kstack", "ustack"):
        raise no_twin(f"{n} inside an expression (it may be a key, or comm == \"...\")")
    raise no_twin(f"the builtin {n!r}")


def _pointer(node: expr.Node, scope: _Scope) -> str:
    """A C expression usable as the root of BPF_CORE_READ (a typed pointer)."""
    if isinstance(node, expr.Cast):
        return (
            f"(({node.ctype.text()})(unsigned long)({_value(node.operand, scope, raw=True)}))"
        )
    if isinstance(node, expr.Name):
        return _name(node, scope)
    if isinstance(node, expr.Field):
        return _field(node, scope)
    raise no_twin("a field read through an operator result (cast it first)")


def _field(node: expr.Field, scope: _Scope) -> str:
    """`a->b.c->d` -> BPF_CORE_READ(a, b.c, d); `args.f` -> the record field or parameter."""
    segments: list[tuple[str, bool]] = []
    cur: expr.Node = node
    while isinstance(cur, expr.Field) and cur.base != expr.Name("args"):
        segments.insert(0, (cur.field, cur.arrow))
        cur = cur.base
    accessors: list[str] = []
    for name, arrow in segments:
        if arrow:
            accessors.append(name)
        elif accessors:
            accessors[-1] += "." + name  # a->b.c: one accessor through the embedded struct
        else:
            raise no_twin(f"the '.' field access .{name} on a value that is not a pointer")
    # args.F at the root, or a pointer-valued expression
    root = _args_field(cur.field, scope) if isinstance(cur, expr.Field) else _pointer(cur, scope)
    if not accessors:
        return root
    return f"BPF_CORE_READ({root}, {', '.join(accessors)})"


def _comm_compare(op: str, literal: str, scope: _Scope) -> str:
    """comm == "x": bytes compared through the literal's NUL, as bpftrace does (no C strings:
    the literal becomes character constants, so nothing of it is pasted)."""
    scope.uses_comm = True
    data = literal.encode() + b"\0"
    if len(data) > COMM_LEN:
        test = "0"  # a comm holds at most 15 bytes: never equal
    else:
        test = " && ".join(f"comm[{i}] == {b}" for i, b in enumerate(data))
    return f"({test})" if op == "==" else f"!({test})"


def _value(node: expr.Node, scope: _Scope, raw: bool = False) -> str:
    """A C expression of type __s64 for an integer-valued spec expression."""
    if isinstance(node, expr.Int):
        return _c_int(node.value)
    if isinstance(node, expr.Str):
        raise no_twin("a string outside comm == \"...\"")
    if isinstance(node, expr.Name | expr.Field):
        text = _name(node, scope) if isinstance(node, expr.Name) else _field(node, scope)
        return text if raw else f"(__s64){text}"
    if isinstance(node, expr.Cast):
        return f"(__s64)(unsigned long){_pointer(node, scope)}"
    if isinstance(node, expr.Unary):
        return f"({node.op}{_value(node.operand, scope)})"
    if isinstance(node, expr.Stack):
        raise no_twin(f"{node.kind}() inside an expression (it may be a key)")
    if node.op in ("==", "!=") and (
        isinstance(node.left, expr.Str) or isinstance(node.right, expr.Str)
    ):
        lit, other = (
            (node.left, node.right) if isinstance(node.left, expr.Str) else (node.right, node.left)
        )
        assert isinstance(lit, expr.Str)
        if other != expr.Name("comm"):
            raise no_twin("a string comparison with something other than comm")
        return _comm_compare(node.op, lit.value, scope)
    left, right = _value(node.left, scope), _value(node.right, scope)
    if node.op in ("/", "%", ">>"):  # bpftrace divides and shifts unsigned
        return f"(__s64)((__u64){left} {node.op} (__u64){right})"
    return f"({left} {node.op} {right})"


# --- the program -------------------------------------------------------------------------------


def _comment(text: str) -> str:
    """Spec text inside a C comment: it can neither close the comment nor open a nested one
    (-Wcomment)."""
    return text.replace("*/", "*\\/").replace("/*", "/\\*")


def _key_fields(agg: Agg, columns: list[str], scope: _Scope) -> list[tuple[KeyField, str]]:
    """(field, statement that fills it) per key of one map."""
    keys = [*agg.keys, agg.value] if agg.func == "collect" else list(agg.keys)
    out: list[tuple[KeyField, str]] = []
    for i, (text, column) in enumerate(zip(keys, columns, strict=True)):
        assert text is not None
        tree = expr.parse(text, agg.key_option())
        name = f"k{i}_{column}" if IDENT.fullmatch(column) else f"k{i}"
        stack = expr.stack_of(tree)
        if tree == expr.Name("comm"):
            kf = KeyField("comm", name, column)
            fill = f"bpf_get_current_comm(key.{name}, sizeof(key.{name}));"
        elif stack is not None:
            if stack.kind == "ustack" and stack.mode == "perf":
                raise no_twin("ustack(perf) (the twin prints user frames as bare addresses; "
                              "bpftrace's perf mode adds names and files)")
            kf = KeyField(stack.kind, name, column, stack)
            smap = kf.stack_map
            if stack.kind == "kstack":
                fill = f"key.{name} = bpf_get_stackid(ctx, &{smap}, 0);"
            else:
                scope.uses_pid_tgid = True
                fill = (
                    f"key.{name} = bpf_get_stackid(ctx, &{smap}, BPF_F_USER_STACK);\n"
                    f"\t\tkey.{name}_pid = pid_tgid >> 32;"
                )
        else:
            kf = KeyField("int", name, column)
            fill = f"key.{name} = {_value(tree, scope)};"
        out.append((kf, fill))
    return out


def stacks_map(limit: int | None) -> str:
    """The stack-trace map of stacks cut to `limit` frames (None: MAX_STACK, STACKS_MAP)."""
    return STACKS_MAP if limit is None or limit == MAX_STACK else f"{STACKS_MAP}_{limit}"


def _key_struct(tmap: TwinMap) -> list[str]:
    lines = [f"struct {tmap.bpf_name}_key {{"]
    for k in tmap.keys:
        what = f"/* {_comment(k.column)} */" if k.column else ""
        if k.kind == "comm":
            lines.append(f"\tchar {k.c_name}[{COMM_LEN}]; {what}")
        elif k.kind == "ustack":
            lines.append(f"\t__s64 {k.c_name}; {what}")
            lines.append(f"\t__u64 {k.c_name}_pid; /* whose address space the stack is in */")
        elif k.kind in ("slot", "pad"):
            note = "histogram slot" if k.kind == "slot" else "no keys: one element"
            lines.append(f"\t__u64 {k.c_name}; /* {note} */")
        else:
            lines.append(f"\t__s64 {k.c_name}; {what}")
    return [*lines, "};"]


VALUE_TYPES = {
    "count": "__u64",
    "hist": "__u64",
    "lhist": "__u64",
    "collect": "__u64",
    "sum": "__s64",
    "min": "struct twin_extreme",
    "max": "struct twin_extreme",
    "avg": "struct twin_total",
    "stats": "struct twin_total",
}


def _update(agg: Agg, value: str) -> list[str]:
    """Statements that add one event to the element `v` points at."""
    if agg.func in ("count", "hist", "lhist", "collect"):
        return ["*v += 1;"]
    if agg.func == "sum":
        return [f"*v += {value};"]
    if agg.func in ("min", "max"):
        op = "<" if agg.func == "min" else ">"
        return [
            f"__s64 x = {value};",
            "",
            f"if (!v->seen || x {op} v->value)",
            "\tv->value = x;",
            "v->seen = 1;",
        ]
    return [f"v->total += {value};", "v->count += 1;"]


def _statement_text(agg: Agg) -> str:
    keys = [*agg.keys, agg.value] if agg.func == "collect" else list(agg.keys)
    index = f"[{', '.join(k for k in keys if k)}]" if keys else ""
    if agg.func in ("count", "collect"):
        call = "count()"
    elif agg.func == "lhist" and agg.lhist:
        call = f"lhist({agg.value}, {', '.join(map(str, agg.lhist))})"
    else:
        call = f"{agg.func}({agg.value})"
    return f"{agg.map}{index} = {call}"


# The fixed C every twin shares (twin_drops, element(), log2_slot(), lhist_slot()) is a header
# shipped with the package (harness/twin/twin.bpf.h), #included by each generated file.
SHARED_HEADER = "twin.bpf.h"


def _tp_struct(name: str, fields: list[TracepointField]) -> list[str]:
    lines = [f"struct {name} {{", "\t__u64 common; /* common_type, flags, preempt_count, pid */"]
    at = 8
    packed = False
    for f in fields:
        if f.offset < at:
            continue
        if f.offset > at:
            lines.append(f"\tchar pad_{at}[{f.offset - at}];")
        if f.scalar:
            ctype = f"__{'s' if f.signed else 'u'}{f.size * 8}"
            lines.append(f"\t{ctype} {f.name}; /* offset {f.offset} */")
            packed |= f.offset % f.size != 0
        else:
            lines.append(f"\tchar {f.name}[{f.size}]; /* offset {f.offset}, not a number */")
        at = f.offset + f.size
    return [*lines, "}" + (" __attribute__((packed));" if packed else ";")]


def _signature(
    kind: str, args: tuple[Arg, ...], target: str, tp_struct: str, name: str = PROG_NAME
) -> list[str]:
    params = ", ".join(
        f"{a.parsed_ctype().text()} {_var(a)}" if a.ctype else f"__u64 {_var(a)}" for a in args
    )
    params = f", {params}" if params else ""
    if kind == "tracepoint":
        category, event = target.split(":")
        return [f'SEC("tp/{category}/{event}")', f"int {name}(struct {tp_struct} *ctx)"]
    if kind in ("kprobe", "uprobe"):
        return [f'SEC("{kind}/{target}")', f"int BPF_KPROBE({name}{params})"]
    if kind in ("kretprobe", "uretprobe"):
        return [f'SEC("{kind}/{target}")', f"int BPF_KRETPROBE({name})"]
    section = "fentry" if kind == "kfunc" else "fexit"
    for a in args:
        if not a.ctype:
            raise UsageError(
                f"kfunc argument {a.name} has no C type",
                f"declare it for the twin: --arg {a.name}='struct sk_buff *'",
            )
    return [f'SEC("{section}/{target}")', f"int BPF_PROG({name}{params})"]


PREAMBLE = (
    '#include "vmlinux.h"',
    "#include <bpf/bpf_helpers.h>",
    "#include <bpf/bpf_tracing.h>",
    "#include <bpf/bpf_core_read.h>",
    "",
)
FLOOR_NAME = "twin_floor"


def generate_floor_c(spec: ProbeSpec, *, symbol: str | None = None) -> TwinProgram:
    """An empty program on `spec`'s attach point: no filter, no map, it returns at once.

    What any program there costs before it does anything (the kernel's dispatch to BPF, and
    the statistics' own clock reads), so a benchmark reads each tracer as this floor plus its
    program. Generated here so it follows every attach type and clone name the twin does.
    """
    kind = spec.probe.kind
    if kind not in TWIN_KINDS or "*" in spec.probe.target:
        raise no_twin(f"the probe {spec.probe.text()}")
    target = symbol or spec.probe.target
    ctx = "twin_floor_ctx"
    text = "\n".join([
        "// SPDX-License-Identifier: GPL-2.0",
        "/* Generated by ktrace-harness: the benchmarks' floor, an empty program on the attach",
        f" * point of {_comment(spec.probe.text(symbol))}: no filter, no map, no helper call. */",
        *PREAMBLE,
        'char LICENSE[] SEC("license") = "GPL";',
        "",
        *([f"struct {ctx} {{ __u64 common; }}; /* the record's header; unread */", ""]
          if kind == "tracepoint" else []),
        *_signature(kind, (), target, ctx, FLOOR_NAME),
        "{",
        "\treturn 0;",
        "}",
        "",
    ])
    return TwinProgram(text, (), (), spec.probe.text(symbol))


def generate_c(
    spec: ProbeSpec,
    *,
    tracepoint_format: str | None = None,
    symbol: str | None = None,
    spec_line: str = "",
) -> TwinProgram:
    """The twin of `spec` as C source plus what its reader needs. `tracepoint_format` is the
    probe's format file (read by the caller); `symbol` the kernel's name for the function."""
    kind = spec.probe.kind
    if spec.offcpu:
        raise no_twin("an off-CPU spec (time from a thread's switch-out to its switch-in)")
    if kind not in TWIN_KINDS:
        raise no_twin(f"the probe type {kind}")
    if "*" in spec.probe.target:
        raise no_twin(f"the wildcard probe {spec.probe.text()}")
    target = symbol or spec.probe.target
    if kind in ("uprobe", "uretprobe") and not spec.probe.target.startswith("/"):
        raise no_twin(f"{spec.probe.text()} (give the binary's absolute path)")
    tp_fields: dict[str, TracepointField] = {}
    tp_struct = ""
    fields: list[TracepointField] = []
    if kind == "tracepoint":
        if tracepoint_format is None:
            raise UsageError(f"no format for {spec.probe.text()}", "pass its format file text")
        fields = parse_tracepoint_format(tracepoint_format)
        tp_fields = {f.name: f for f in fields}
        tp_struct = "twin_" + target.replace(":", "_")
    scope = _Scope(spec, tp_fields)

    # Filters, in the order bpftrace's predicate has them.
    settings: list[str] = []
    filters: list[tuple[str, str]] = []
    if spec.pid is not None or spec.workload_pid:
        settings.append("target_pid")
        scope.uses_pid_tgid = True
        filters.append(("pid == the target pid", "(pid_tgid >> 32) != target_pid"))
    if spec.comm:
        test = _comm_compare("==", spec.comm, scope)
        filters.append((f"--comm {spec.comm}", f"!{test}"))
    if spec.cgroup:
        settings.append("target_cgroup")
        filters.append((f"--cgroup {spec.cgroup}", "bpf_get_current_cgroup_id() != target_cgroup"))
    for p in spec.predicates:
        filters.append((f"--filter {p}", f"!({_value(expr.parse(p, '--filter'), scope)})"))

    # One map and one handler block per aggregation.
    maps: list[TwinMap] = []
    decls: list[str] = []
    blocks: list[str] = []
    stack_maps: dict[str, int] = {}  # stack-trace map -> frames it holds
    for agg in spec.aggs:
        bpf_name = "map_" + (agg.map[1:] or "at")
        keyed = _key_fields(agg, agg.columns(), scope)
        keys = [kf for kf, _ in keyed]
        fills = [fill for _, fill in keyed]
        value = _value(expr.parse(agg.value, f"--{agg.func}"), scope) if agg.value else ""
        if agg.func in ("collect",):
            value = ""
        if agg.func == "hist":
            keys.append(KeyField("slot", "slot"))
            fills.append(f"key.slot = log2_slot({value});")
        elif agg.func == "lhist":
            assert agg.lhist is not None
            lo, hi, step = agg.lhist
            if (hi - lo) % step:
                raise no_twin(f"lhist {lo}:{hi}:{step} (a range that is not a multiple of step)")
            keys.append(KeyField("slot", "slot"))
            fills.append(f"key.slot = lhist_slot({value}, {lo}, {hi}, {step});")
        if not keys:
            keys.append(KeyField("pad", "none"))
        for k in keys:
            if k.kind in ("kstack", "ustack"):
                stack_maps[k.stack_map] = k.depth
        tmap = TwinMap(
            agg.map, bpf_name, agg.func, tuple(keys), agg.lhist, _statement_text(agg)
        )
        maps.append(tmap)
        line = _comment(_statement_text(agg))
        decls += [
            f"/* {line} */",
            *_key_struct(tmap),
            "",
            "struct {",
            "\t__uint(type, BPF_MAP_TYPE_PERCPU_HASH);",
            f"\t__uint(max_entries, {MAP_ENTRIES});",
            f"\t__type(key, struct {bpf_name}_key);",
            f"\t__type(value, {VALUE_TYPES[agg.func]});",
            f'}} {bpf_name} SEC(".maps");',
            "",
        ]
        body = [
            f"\t/* {line} */",
            "\t{",
            f"\t\tstruct {bpf_name}_key key;",
            f"\t\t{VALUE_TYPES[agg.func]} *v;",
            "",
            "\t\t__builtin_memset(&key, 0, sizeof(key));",
            *(f"\t\t{f}" for f in fills),
            f"\t\tv = element(&{bpf_name}, &key);",
            "\t\tif (v) {",
            *(f"\t\t\t{s}" if s else "" for s in _update(agg, value)),
            "\t\t}",
            "\t}",
        ]
        blocks.append("\n".join(body))

    header = [
        "// SPDX-License-Identifier: GPL-2.0",
        "/* Generated by ktrace-harness: the libbpf CO-RE twin of the bpftrace program made from",
        " * the same probe spec. Read by the generic loader (harness/twin/twinload.c), which sums",
        " * the per-CPU maps into the records the crosscheck compares with bpftrace's maps.",
        " *",
        f" *   probe:  {_comment(spec.probe.text(symbol))}",
        *(f" *   map:    {_comment(_statement_text(a))}" for a in spec.aggs),
        *(f" *   filter: {_comment(what)}" for what, _ in filters),
        *([f" *   spec:   {_comment(spec_line)}"] if spec_line else []),
        " */",
        *PREAMBLE,
        f'#include "{SHARED_HEADER}" /* twin_drops, element(), log2_slot(), lhist_slot(): the'
        " fixed C of every twin, shipped in harness/twin */",
        "",
        'char LICENSE[] SEC("license") = "GPL";',
        "",
    ]
    if settings:
        header.append("/* Set by the loader before load (--set NAME=VALUE). */")
        if "target_pid" in settings:
            header.append("const volatile __u32 target_pid = 0;")
        if "target_cgroup" in settings:
            header.append("const volatile __u64 target_cgroup = 0;")
        header.append("")
    if kind == "tracepoint":
        header += [
            f"/* The {spec.probe.text()} record, laid out from its format file. */",
            *_tp_struct(tp_struct, fields),
            "",
        ]
    for smap, depth in sorted(stack_maps.items()):
        # One map per frame limit, as bpftrace has: the kernel keeps (and hashes) only the
        # first `depth` frames, so stacks equal that far share one id, as in bpftrace.
        header += [
            f"/* Stack ids -> up to {depth} return addresses (kstack and ustack keys). */",
            "struct {",
            "\t__uint(type, BPF_MAP_TYPE_STACK_TRACE);",
            f"\t__uint(max_entries, {STACK_ENTRIES});",
            "\t__uint(key_size, sizeof(__u32));",
            f"\t__uint(value_size, {depth} * sizeof(__u64));",
            f'}} {smap} SEC(".maps");',
            "",
        ]

    prologue: list[str] = []
    if scope.uses_pid_tgid:
        prologue.append("\t__u64 pid_tgid = bpf_get_current_pid_tgid();")
    prologue += scope.record_reads.values()
    if scope.uses_comm:
        prologue.append(f"\tchar comm[{COMM_LEN}];")
    if scope.uses_ret:
        prologue.append("\t__u64 ret = 0;")
    if prologue:
        prologue.append("")
    if scope.uses_comm:
        prologue.append("\tbpf_get_current_comm(comm, sizeof(comm));")
    if scope.uses_ret:
        prologue.append("\tbpf_get_func_ret(ctx, &ret);")
    for what, test in filters:
        prologue += [f"\tif ({test}) /* {_comment(what)} */", "\t\treturn 0;"]

    handler = [
        f"/* {_comment(spec.probe.text(symbol))}: every map above, for each event that passes the"
        " filters. */",
        *_signature(kind, spec.args, target, tp_struct),
        "{",
        *prologue,
        "",
        "\n\n".join(blocks),
        "\treturn 0;",
        "}",
    ]
    text = "\n".join([*header, *decls, *handler]) + "\n"
    return TwinProgram(text, tuple(maps), tuple(settings), spec.probe.text(symbol))

"""Spec expressions as trees: parsed by grammar/spec_expr.lark, never pasted into a program.

A spec's filters, keys, aggregation values and --arg types are user text. They are parsed into
the small node types below and codegen re-emits the tree (bpftrace here; C in codegen_c), so a
spec string can never close a predicate, open a block, add a probe or fill another map. Text the
grammar does not admit is a one-line UsageError naming the option and the column.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import UsageError
from harness.paths import cache_home

if TYPE_CHECKING:
    from lark import Lark

GRAMMAR_FILE = "spec_expr.lark"
MAX_TEXT = 1000  # longer spec text is refused before parsing (it is never a real probe spec)
MAX_DEPTH = 100  # parse-tree levels; deeper is refused before anything recurses through it

# Integer C types an --arg may name: words (sorted) -> (size in bytes, signed).
INT_TYPES: dict[tuple[str, ...], tuple[int, bool]] = {}
for _words, _size, _signed in [
    ("char", 1, True), ("signed char", 1, True), ("unsigned char", 1, False),
    ("short", 2, True), ("short int", 2, True), ("unsigned short", 2, False),
    ("int", 4, True), ("signed int", 4, True), ("signed", 4, True),
    ("unsigned", 4, False), ("unsigned int", 4, False),
    ("long", 8, True), ("long int", 8, True), ("unsigned long", 8, False),
    ("long long", 8, True), ("unsigned long long", 8, False),
    ("bool", 1, False), ("_Bool", 1, False),
]:
    INT_TYPES[tuple(sorted(_words.split()))] = (_size, _signed)
for _bits in (8, 16, 32, 64):
    for _prefix in ("u", "__u"):
        INT_TYPES[(f"{_prefix}{_bits}",)] = (_bits // 8, False)
    for _prefix in ("s", "__s"):
        INT_TYPES[(f"{_prefix}{_bits}",)] = (_bits // 8, True)
INT_TYPES[("size_t",)] = (8, False)
INT_TYPES[("ssize_t",)] = (8, True)
INT_TYPES[("pid_t",)] = (4, True)


@dataclass(frozen=True)
class CType:
    """A C type from the type grammar: `struct sk_buff *`, `unsigned int`, `u32`, `char *`."""

    words: tuple[str, ...]  # ("sk_buff",) for a record, else the integer type's words
    stars: int = 0
    record: str | None = None  # "struct" or "union"

    def text(self) -> str:
        base = f"{self.record} {' '.join(self.words)}" if self.record else " ".join(self.words)
        return f"{base} {'*' * self.stars}" if self.stars else base

    @property
    def is_pointer(self) -> bool:
        return self.stars > 0

    def int_layout(self) -> tuple[int, bool]:
        """(size, signed) of an integer type (a pointer is an unsigned 8-byte value)."""
        if self.stars:
            return 8, False
        return INT_TYPES[tuple(sorted(self.words))]

    def bpftrace_cast(self) -> str:
        """bpftrace's spelling: records as in C, integers as int8..uint64 (bpftrace 0.17+)."""
        if self.record or self.stars:
            return self.text()
        size, signed = self.int_layout()
        return f"{'' if signed else 'u'}int{size * 8}"


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Int:
    value: int


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Field:
    base: Node
    field: str
    arrow: bool  # `->` (through a pointer) or `.`


@dataclass(frozen=True)
class Cast:
    ctype: CType
    operand: Node


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Stack:
    """`kstack(perf, 8)`: a stack key in one of bpftrace's print modes, cut to `limit` frames
    (None: as deep as the kernel walks, MAX_FRAMES). Bare `kstack` stays a Name."""

    kind: str  # kstack or ustack
    mode: str = "bpftrace"
    limit: int | None = None


Node = Name | Int | Str | Field | Cast | Unary | Binary | Stack
STACKS = ("kstack", "ustack")
# bpftrace's stack print modes: `name+off` frames, perf's `addr name+off`, bare addresses (0.20+).
STACK_MODES = ("bpftrace", "perf", "raw")
MAX_FRAMES = 127  # kernel.perf_event_max_stack's default: no stack walk returns more
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
LOGICAL = ("&&", "||")


@functools.cache
def _parser() -> Lark:
    """The compiled spec grammar, from the on-disk cache when this grammar was compiled before.

    A spec is parsed before bpftrace can start, so compiling the grammar (~60 ms of CPU, more
    under load) delays every `harness run` of a probe or catalog entry; loading the compiled
    tables takes ~5 ms. The cache file is named by a hash of everything it depends on and
    written by rename, so concurrent runs never read half a file (lark's own `cache=` writes in
    place)."""
    import hashlib

    import lark
    from lark import Lark

    grammar = resources.files("harness.grammar").joinpath(GRAMMAR_FILE).read_text()
    options: dict[str, Any] = {"parser": "lalr", "lexer": "contextual", "start": ["expr", "ctype"]}
    key = hashlib.sha256(
        f"{grammar}{sorted(options.items())}{lark.__version__}{sys.version_info[:2]}".encode()
    ).hexdigest()[:16]
    path = cache_home() / "lark" / f"spec_expr-{key}.pickle"
    try:
        with path.open("rb") as f:
            return Lark.load(f)
    except Exception:  # missing, unreadable or from another lark: compile it below
        pass
    parser = Lark(grammar, **options)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            parser.save(f)
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only costs the next run the compile again
    return parser


def _ctype(tree: Any) -> CType:
    if tree.data == "ctype":
        tree = tree.children[0]
    toks = [str(t) for t in tree.children]
    stars = toks.count("*")
    words = tuple(t for t in toks if t != "*")
    if tree.data == "record_type":
        return CType(words[1:], stars, record=words[0])
    if tuple(sorted(words)) not in INT_TYPES and not (words == ("void",) and stars):
        raise ValueError(f"unknown type {' '.join(words)!r}")
    return CType(words, stars)


def _unquote(token: str) -> str:
    body = token[1:-1]
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _node(tree: Any) -> Node:
    from lark import Token

    if isinstance(tree, Token):
        raise ValueError(f"unexpected token {tree!s}")
    kids = tree.children
    kind = tree.data
    if kind == "name":
        return Name(str(kids[0]))
    if kind == "int":
        value = int(str(kids[0]), 0)
        if value >= 1 << 64:
            raise ValueError(f"integer {kids[0]!s} does not fit in 64 bits")
        return Int(value)
    if kind == "string":
        return Str(_unquote(str(kids[0])))
    if kind in ("arrow", "dot"):
        return Field(_node(kids[0]), str(kids[1]), kind == "arrow")
    if kind == "prefix":
        return Unary(str(kids[0]), _node(kids[1]))
    if kind == "cast":
        return Cast(_ctype(kids[1]), _node(kids[3]))
    if kind == "call":
        return _stack_call(str(kids[0]), [_node(k) for k in kids[1:]])
    left, op, right = kids
    return Binary(str(op), _node(left), _node(right))


class StackCallError(ValueError):
    """A call the spec language does not admit: not kstack/ustack, or their arguments wrong."""


def _stack_call(name: str, args: list[Node]) -> Stack:
    """`kstack(perf)`, `ustack(8)`, `kstack(perf, 8)`: bpftrace's order, mode first."""
    if name not in STACKS:
        raise StackCallError(f"{name}() is no function a spec may call "
                             "(only kstack() and ustack())")
    mode, limit = "bpftrace", None
    rest = list(args)
    if rest and isinstance(rest[0], Name):
        mode = rest.pop(0).id  # type: ignore[union-attr]
        if mode not in STACK_MODES:
            raise StackCallError(f"{name}({mode}): the modes are {', '.join(STACK_MODES)}")
    if rest and isinstance(rest[0], Int):
        limit = int(rest.pop(0).value)  # type: ignore[union-attr]
        if not 1 <= limit <= MAX_FRAMES:
            raise StackCallError(f"{name}(..., {limit}): a stack holds 1 to {MAX_FRAMES} frames")
    if rest:
        raise StackCallError(f"{name}() takes a mode, a frame limit, or both (mode first)")
    return Stack(name, mode, limit)


def stack_of(node: Node) -> Stack | None:
    """The stack a key reads (`kstack` as well as `kstack(perf, 8)`), None for other keys."""
    if isinstance(node, Stack):
        return node
    if isinstance(node, Name) and node.id in STACKS:
        return Stack(node.id)
    return None


def _error(what: str, text: str, err: Exception) -> UsageError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    shown = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END"
    ):
        where = f"ends early at column {len(text) + 1}"
    elif isinstance(err, UnexpectedToken):
        where = f"unexpected {str(err.token)[:20]!r} at column {err.column}"
    elif isinstance(err, UnexpectedCharacters):
        where = f"unexpected {text[err.pos_in_stream or 0]!r} at column {err.column}"
    else:
        where = str(err)
    if isinstance(err, StackCallError):
        return UsageError(f"{what} {shown!r}: {where}",
                          "write kstack, kstack(perf), kstack(8) or kstack(perf, 8) (ustack alike)")
    return UsageError(
        f"{what} {shown!r}: {where}",
        "write an expression over argument names, ->/. fields, (struct X *) casts, numbers, "
        '"strings", arithmetic, comparisons and && || !',
    )


def _check_text(what: str, text: str) -> None:
    if len(text) > MAX_TEXT:
        raise UsageError(f"{what}: {len(text)} characters", f"keep it under {MAX_TEXT}")
    if "\n" in text or "\r" in text:
        col = min(i for i in (text.find("\n"), text.find("\r")) if i >= 0) + 1
        raise UsageError(f"{what} {text[:40]!r}: line break at column {col}", "write one line")


@functools.lru_cache(maxsize=1024)
def parse(text: str, what: str = "expression") -> Node:
    """Spec text -> tree; `what` names the option in the error (`--filter`, `--hist`)."""
    from lark.exceptions import LarkError

    _check_text(what, text)
    try:
        tree = _parser().parse(text, start="expr")
    except (LarkError, ValueError) as err:
        raise _error(what, text, err) from None
    depth = _depth(tree)
    if depth > MAX_DEPTH:
        raise UsageError(
            f"{what} {text[:40]!r}...: operators nested {depth} deep",
            f"keep the nesting under {MAX_DEPTH} (no real filter or key needs more)",
        )
    try:
        return _node(tree)
    except (LarkError, ValueError) as err:
        raise _error(what, text, err) from None


def _depth(tree: Any) -> int:
    """How deep a parse tree nests, counted without recursion (the tree builders and emitters
    recurse once per level, so a level count is checked before they run)."""
    from lark import Tree

    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, level = todo.pop()
        deepest = max(deepest, level)
        todo += [(child, level + 1) for child in node.children if isinstance(child, Tree)]
    return deepest


@functools.lru_cache(maxsize=256)
def parse_ctype(text: str, what: str = "--arg type") -> CType:
    """A C type (`struct sk_buff *`, `unsigned int`, `u32`) or a one-line UsageError."""
    from lark.exceptions import LarkError

    _check_text(what, text)
    fix = "write e.g. 'struct sk_buff *', 'unsigned int', 'u64' or 'char *'"
    try:
        return _ctype(_parser().parse(text, start="ctype"))
    except ValueError as err:
        raise UsageError(f"{what} {text[:60]!r}: {err}", fix) from None
    except LarkError as err:
        raise UsageError(_error(what, text, err).cause + " (not a C type)", fix) from None


def names(node: Node) -> set[str]:
    """Every identifier the expression uses (field names excluded)."""
    if isinstance(node, Name):
        return {node.id}
    if isinstance(node, Stack):
        return {node.kind}
    if isinstance(node, Field):
        return names(node.base)
    if isinstance(node, Cast | Unary):
        return names(node.operand)
    if isinstance(node, Binary):
        return names(node.left) | names(node.right)
    return set()


def inner_stack(node: Node) -> bool:
    """True when a kstack()/ustack() call sits inside the expression (not as all of it)."""
    kids: list[Node] = []
    if isinstance(node, Field):
        kids = [node.base]
    elif isinstance(node, Cast | Unary):
        kids = [node.operand]
    elif isinstance(node, Binary):
        kids = [node.left, node.right]
    return any(isinstance(k, Stack) or inner_stack(k) for k in kids)


def bare_args(node: Node) -> bool:
    """True when `args` appears other than as the base of a field (`args.len`)."""
    if isinstance(node, Name):
        return node.id == "args"
    if isinstance(node, Field):
        return False if node.base == Name("args") else bare_args(node.base)
    if isinstance(node, Cast | Unary):
        return bare_args(node.operand)
    if isinstance(node, Binary):
        return bare_args(node.left) or bare_args(node.right)
    return False


def quote(value: str) -> str:
    """A double-quoted literal valid in both bpftrace and C: quote, backslash, line breaks and
    everything outside printable ASCII become escapes (octal bytes of its UTF-8)."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8", "surrogatepass"))
    return '"' + "".join(out) + '"'


def string_value(what: str, value: str) -> str:
    """Validate a string option (--comm, --cgroup): a NUL would end it early in both tracers,
    and an empty one would filter nothing while looking like a filter."""
    if not value:
        raise UsageError(f"{what} is empty", f"give it a value, or drop {what}")
    if "\0" in value:
        raise UsageError(
            f"{what} {value[:40]!r}: NUL at column {value.index(chr(0)) + 1}", "drop the NUL"
        )
    if len(value) > MAX_TEXT:
        raise UsageError(f"{what}: {len(value)} characters", f"keep it under {MAX_TEXT}")
    return value


class MemberReads(Protocol):
    """Where struct members lie in the kernel a program is compiled for (harness.spec.codegen's
    FieldOffsets): `read` gives a cast member read as a read at the member's offset, or None
    (the cast stays)."""

    def read(self, struct: str, member: str, pointer: str) -> str | None: ...


REGISTER = re.compile(r"arg\d+|retval")  # what a kprobe's cast argument is read from


def to_bpftrace(node: Node, bindings: dict[str, Node], args_dot: bool, top: bool = True,
                reads: MemberReads | None = None) -> str:
    """Re-emit a tree as bpftrace text. Names in `bindings` are replaced by their node (how an
    argument is reached on this attach type); `args.f` is spelled `args->f` unless `args_dot`.
    Nested operations are parenthesised, so the text means exactly the tree.

    `reads` (for bpftrace --aot, which refuses every cast): a member read through a cast of a
    register to a struct pointer, `((struct sk_buff *)arg0)->hash`, is written as the read at
    the member's offset that `reads` gives for the kernel the program is compiled for."""

    def sub(n: Node) -> str:
        return to_bpftrace(n, bindings, args_dot, top=False, reads=reads)

    if isinstance(node, Name):
        bound = bindings.get(node.id)
        if bound is None:
            return node.id
        return to_bpftrace(bound, {}, args_dot, top=False, reads=reads)
    if isinstance(node, Int):
        return str(node.value)
    if isinstance(node, Str):
        return quote(node.value)
    if isinstance(node, Stack):
        parts = ([node.mode] if node.mode != "bpftrace" or node.limit is None else []) + (
            [str(node.limit)] if node.limit is not None else [])
        return f"{node.kind}({', '.join(parts)})"
    if isinstance(node, Field):
        if node.base == Name("args") and "args" not in bindings:
            return f"args{'.' if args_dot else '->'}{node.field}"
        read = _member_read(node, bindings, reads)
        if read is not None:
            return read
        base = sub(node.base)
        if isinstance(node.base, Unary | Binary):
            base = f"({base})"
        return f"{base}{'->' if node.arrow else '.'}{node.field}"
    if isinstance(node, Cast):
        return f"(({node.ctype.bpftrace_cast()}){_wrapped(sub(node.operand), node.operand)})"
    if isinstance(node, Unary):
        return f"{node.op}{_wrapped(sub(node.operand), node.operand)}"
    text = f"{sub(node.left)} {node.op} {sub(node.right)}"
    return text if top else f"({text})"


def _member_read(node: Field, bindings: dict[str, Node], reads: MemberReads | None
                 ) -> str | None:
    """`reads`' text for `((struct S *)argN)->m` (the cast written in the spec, or an argument
    bound to it), None for any other field or without `reads`."""
    base = node.base
    if reads is None or not node.arrow:
        return None
    if isinstance(base, Name) and base.id in bindings:
        base = bindings[base.id]
    if not isinstance(base, Cast) or base.ctype.record != "struct" or base.ctype.stars != 1:
        return None
    operand = base.operand
    if not isinstance(operand, Name) or operand.id in bindings or \
            not REGISTER.fullmatch(operand.id):
        return None
    return reads.read(" ".join(base.ctype.words), node.field, operand.id)


def _wrapped(text: str, node: Node) -> str:
    """An operand of a prefix operator or cast: parenthesised unless it is an atom."""
    return f"({text})" if isinstance(node, Unary | Binary) and not text.startswith("(") else text

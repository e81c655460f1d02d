"""Which stacks are user stacks and which are kernel stacks, read from the frames or the program.

bpftrace prints `ustack` and `kstack` alike (indented frames, leaf first), so a map keyed by
`[ustack, kstack]` does not say which part is which. A run from a spec knows (the spec names
its key columns); otherwise the harness decides, in this order:

1. The program text, when the harness ran it: `@m[comm, ustack, kstack(perf)] = count()` names
   each key part, `@s[tid] = kstack` the value (`stack_kinds_in_program`).
2. The frames (`stack_kind`): an address says it outright, a kernel address being one at or above
   0xffff800000000000 (the kernel half of x86-64 and arm64 with 48-bit or 4-level addresses;
   user space ends below 0x0001000000000000). Addresses are the raw `0x...` frames bpftrace
   prints for what it cannot name and the hex column `kstack(perf)`/`ustack(perf)` put before
   every frame. A `(/path/to/file)` after a frame is `ustack(perf)`'s mapped file: user.
   Without addresses, a stack's root frame says where the thread entered: the kernel is entered
   by a system call, an exception or interrupt entry, `ret_from_fork` or the CPU's start-up
   (`entry_SYSCALL_64*`, `asm_*`, `ret_from_fork*`, `*startup_64`, `el0*`/`el1*` on arm64, ...),
   a user thread starts in `_start`, `__libc_start_*`, `start_thread`, `clone*`, `thread_start`.
   A kernel stack holds kernel addresses only (the kernel's unwinder is exact); a user stack
   walked without frame pointers may end in garbage of any value, so one user-range address
   makes a user stack. A column is kernel (or user) when its stacks vote so, nine to one at
   least (a user stack of garbage alone may look like a kernel one); otherwise it stays
   undecided and keeps its `keyN` name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.output.model import Output

USTACK = "ustack"
KSTACK = "kstack"
KERNEL_BASE = 0xFFFF800000000000
_SAMPLE = 256

# A frame's address: `0x...` (raw), or the hex `kstack(perf)`/`ustack(perf)` print first.
# A `kstack(raw)`/`ustack(raw)` frame is its address alone.
_ADDRESS = re.compile(r"(?:0x([0-9a-fA-F]+)|([0-9a-f]{6,16}) |([0-9a-f]{6,16})$)")
_USER_MODULE = re.compile(r".* \(/[^)]*\)$")
# Roots of kernel stacks (where the kernel was entered) and of user threads.
_KERNEL_ROOT = re.compile(
    r"(?:entry_SYSCALL\w*|entry_INT80\w*|asm_\w+|ret_from_fork\w*|\w*startup_64\w*"
    r"|start_kernel|x86_64_start_\w+|rest_init|cpu_startup_entry|el[01][th]_64_\w+"
    r"|__primary_switched|secondary_start_kernel)\+\d+")
_USER_ROOT = re.compile(
    r"(?:_start|__libc_start_\w+|start_thread|clone3?|__clone\w*|thread_start"
    r"|_dl_start\w*|runtime\.goexit[\w.]*|runtime\.rt0_go[\w.]*)(?:\+\d+)?(?: \(.*\))?")


def frame_address(frame: str) -> int | None:
    """The address a printed frame carries, if any."""
    m = _ADDRESS.match(frame)
    if m is None:
        return None
    return int(m.group(1) or m.group(2) or m.group(3), 16)


def _vote(stack: Sequence[str]) -> str | None:
    """One stack (leaf first): kstack, ustack or None (cannot tell)."""
    addresses = [a for a in map(frame_address, stack) if a is not None]
    if any(a < KERNEL_BASE for a in addresses) or any(map(_USER_MODULE.match, stack)):
        return USTACK  # (a user stack walked without frame pointers may hold any number)
    if addresses:
        return KSTACK
    if not stack:
        return None
    root = stack[-1]
    if _KERNEL_ROOT.fullmatch(root):
        return KSTACK
    if _USER_ROOT.fullmatch(root):
        return USTACK
    return None


def stack_kind(stacks: Iterable[object]) -> str | None:
    """The kind of a column of stacks (leaf first): kstack or ustack when its stacks say so nine
    to one at least, None when nothing tells or the votes are split. Of a long column, 256
    stacks spread over it are read (a 100,000-key map costs no more than a small one)."""
    if isinstance(stacks, Sequence) and len(stacks) > _SAMPLE:
        stacks = stacks[:: len(stacks) // _SAMPLE]
    votes = {KSTACK: 0, USTACK: 0}
    for stack in stacks:
        if not isinstance(stack, tuple):  # an empty part, or not a stack at all
            continue
        vote = _vote(stack)
        if vote is not None:
            votes[vote] += 1
    kernel, user = votes[KSTACK], votes[USTACK]
    if kernel > 9 * user:
        return KSTACK
    if user > 9 * kernel:
        return USTACK
    return None


# `@name[keys] = value` / `@name[keys]++` in a bpftrace program; the key text is split at its
# top-level commas by `_split_args`.
_MAP_USE = re.compile(r"(@\w*)\s*\[")
_STACK_EXPR = re.compile(r"([ku]stack)\s*(?:\([^()]*\))?\Z")
_ASSIGN_STACK = re.compile(r"\s*=\s*([ku]stack)\s*(?:\([^()]*\))?\s*(?=[;}])")


def _split_args(text: str, start: int) -> tuple[list[str], int] | None:
    """The comma-separated expressions from `text[start]` to the matching `]`, and the index
    after it (None when it does not close)."""
    depth = 0
    parts: list[str] = []
    at = start
    i = start
    quoted = False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in ")}":
            depth -= 1
        elif c == "]":
            if depth == 0:
                parts.append(text[at:i].strip())
                return parts, i + 1
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[at:i].strip())
            at = i + 1
        i += 1
    return None


def stack_kinds_in_program(program: str) -> dict[str, tuple[list[str | None], str | None]]:
    """Map name -> (per key part: 'kstack', 'ustack' or None; the value's stack kind or None),
    from every `@name[...]` the program writes. A part the uses disagree on is None."""
    found: dict[str, tuple[list[str | None], str | None]] = {}
    for m in _MAP_USE.finditer(program):
        split = _split_args(program, m.end())
        if split is None:
            continue
        args, after = split
        kinds: list[str | None] = []
        for arg in args:
            sm = _STACK_EXPR.match(arg)
            kinds.append(sm.group(1) if sm else None)
        vm = _ASSIGN_STACK.match(program, after)
        value = vm.group(1) if vm else None
        name = m.group(1)
        if name not in found:
            found[name] = (kinds, value)
            continue
        old, old_value = found[name]
        if len(old) != len(kinds):  # a map read elsewhere with other text: keep the first
            continue
        merged = [a if a == b else None for a, b in zip(old, kinds, strict=True)]
        found[name] = (merged, old_value or value)
    return found


def stack_names(kinds: Sequence[str | None]) -> list[str]:
    """Key column names: `ustack`/`kstack` for stack parts of a known kind (each name once),
    `key{i}` for every other part."""
    names = [f"key{i}" for i in range(len(kinds))]
    for kind in (USTACK, KSTACK):
        at = [i for i, k in enumerate(kinds) if k == kind]
        if len(at) == 1:
            names[at[0]] = kind
    return names


def program_key_names(program: str | None, output: Output | None) -> dict[str, list[str]]:
    """Key column names for the maps of a whole-program run whose program text says which key
    parts are user and kernel stacks: the names `stack_names` gives, for maps whose printed
    keys have as many parts as the program's key (anything else is left to the frames)."""
    if not program or output is None:
        return {}
    kinds = stack_kinds_in_program(program)
    names: dict[str, list[str]] = {}
    for mp in output.maps:
        known = kinds.get(mp.name)
        if known is None or not any(known[0]) or mp.name in names:
            continue
        if all(len(k) == len(known[0]) for k in mp.keys):
            names[mp.name] = stack_names(known[0])
    return names

"""A literal bpftrace program (the seed's one-liners) made ready for the runner.

The runner starts the workload when BEGIN prints a marker line, because bpftrace says
"Attaching N probes..." before its probes are live. bpftrace allows one BEGIN probe only, so
the marker goes into the user's own BEGIN when there is one, and otherwise into a BEGIN on a
line appended after the program: either way the user's line numbers stay as they wrote them,
so a syntax error names their line.
"""

from __future__ import annotations

import re

_BEGIN = re.compile(r"(?<![\w:])BEGIN\s*\{")


def with_ready_marker(program: str, marker: str) -> str:
    """`program` with a `printf("<marker>\\n")` that runs once every probe is attached.

    A program that does not end in a block's `}` is left as written: it cannot be valid (every
    probe needs a block), and a BEGIN appended after a probe that has none would become that
    probe's block, turning bpftrace's syntax error into a wrong attach point."""
    printf = f'printf("{marker}\\n"); '
    blanked = _blank_strings_and_comments(program)
    m = _BEGIN.search(blanked)
    if m is not None:
        return program[: m.end()] + " " + printf + program[m.end():]
    if not blanked.rstrip().endswith("}"):
        return program
    return program.rstrip("\n") + f"\nBEGIN {{ {printf}}}\n"


def calls_exit(program: str) -> bool:
    """Whether the program ends itself with `exit()` (then it needs no --duration)."""
    return re.search(r"(?<![\w.])exit\s*\(", _blank_strings_and_comments(program)) is not None


_MAP_NAME = re.compile(r"@\w*")


def map_names(program: str) -> frozenset[str]:
    """The maps a program can print (`@`, `@name`): every map name outside its string
    literals and comments, so a `printf("@x: %d")` names none."""
    return frozenset(_MAP_NAME.findall(_blank_strings_and_comments(program)))


_PRINT_CALL = re.compile(r"\bprint\(\s*(@\w*)")


def print_targets(program: str) -> frozenset[str]:
    """The maps a program passes to print() (the others print once, at exit), read like
    map_names: outside string literals and comments."""
    return frozenset(_PRINT_CALL.findall(_blank_strings_and_comments(program)))


def _blank_strings_and_comments(text: str) -> str:
    """The same text with string literals and comments blanked (same length), so a `BEGIN`
    inside `printf("BEGIN {")` or `// BEGIN {` is not taken for the probe."""
    out = re.sub(r'"(?:\\.|[^"\\\n])*"', lambda m: " " * len(m.group()), text)
    out = re.sub(r"//[^\n]*", lambda m: " " * len(m.group()), out)
    return re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), out, flags=re.S)

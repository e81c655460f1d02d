"""The kernel's symbols: the one reader of /proc/kallsyms.

Two jobs share it: resolving a kernel function to its traceable name (on some kernels
`udp_send_skb` exists only as a compiler clone such as `udp_send_skb.isra.0`), and turning the
twin's stack addresses into `name+offset` the way bpftrace prints `kstack`. Both read the text
symbols (types t, T, w, W) of one kernel's table; the table may come from the running kernel or
from a guest's (the VM lane reads the guest's and passes its text in).
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.spec.model import ProbeSpec

KALLSYMS = Path("/proc/kallsyms")
TEXT_TYPES = frozenset("tTwW")
TEXT_LINE = re.compile(r"^[ \t]*\S+[ \t]+[tTwW][ \t]+\S", re.MULTILINE)  # any text symbol's line
KERNEL_FUNCTION_PROBES = ("kprobe", "kretprobe", "kfunc", "kretfunc")


class Kallsyms:
    """One kernel's text symbols, sorted by address (root sees the real addresses).

    The table is sorted on the first `symbolize` only: resolving a probe's name (every run of a
    kernel function probe, a lane's table included) searches the text instead, which costs a
    tenth of reading and sorting 150-200k symbols (0.1 s here idle, 0.2-0.4 s under load)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def _sorted(self) -> tuple[list[int], list[str]]:
        rows = []
        for line in self.text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in TEXT_TYPES:
                rows.append((int(parts[0], 16), parts[2]))
        rows.sort()
        return [a for a, _ in rows], [n for _, n in rows]

    def symbolize(self, addr: int) -> str:
        """`name+decimal offset` of the function holding addr (`0x...` when none does)."""
        addrs, names = self._sorted
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0 or addrs[i] == 0:
            return f"0x{addr:x}"
        return f"{names[i]}+{addr - addrs[i]}"

    def _text_symbols(self, name: str) -> set[str]:
        """The text symbols that are `name` or `name.SUFFIX` (its compiler clones): the lines
        that hold `name`, each read as the sorted table reads it."""
        found, text, pos = set(), self.text, 0
        while (at := text.find(name, pos)) >= 0:
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at)
            end = len(text) if end < 0 else end
            parts = text[start:end].split()
            if len(parts) >= 3 and parts[1] in TEXT_TYPES and (
                    parts[2] == name or parts[2].startswith(name + ".")):
                found.add(parts[2])
            pos = end + 1
        return found

    def resolve(self, name: str) -> str:
        """The traceable name of a kernel function: itself, else its first compiler clone."""
        found = self._text_symbols(name)
        if name in found:
            return name
        clones = sorted(n for n in found if n.startswith(name + ".") and not n.endswith(".cold"))
        if clones:
            return clones[0]
        raise UsageError(
            f"kernel function {name!r} is not in /proc/kallsyms",
            "check the name (grep it in /proc/kallsyms); it may be inlined on this kernel",
        )

    def __bool__(self) -> bool:
        return TEXT_LINE.search(self.text) is not None


@functools.cache
def kallsyms() -> Kallsyms:
    """The running kernel's table (empty when unreadable, e.g. not root)."""
    try:
        return Kallsyms(KALLSYMS.read_text())
    except OSError:
        return Kallsyms("")


def probe_symbol(
    spec: ProbeSpec, symbols: Kallsyms | Callable[[], Kallsyms] | None = None
) -> str | None:
    """The kernel's name for a spec's kernel function (a clone such as `udp_send_skb.isra.0`
    where the compiler made one), or None for other probe types. `symbols` is a table, or a
    function that reads one (a lane's `kallsyms`: reading and sorting a kernel's table costs
    0.2-0.4 s, so it is read only for kernel function probes), default the running kernel's;
    with no readable table the name is used as written."""
    if spec.probe.kind not in KERNEL_FUNCTION_PROBES:
        return None
    table = kallsyms() if symbols is None else symbols if isinstance(symbols, Kallsyms) \
        else symbols()
    return table.resolve(spec.probe.target) if table else spec.probe.target

"""User stack frames bpftrace could not name because the workload had already exited.

bpftrace names a ustack's addresses when it prints, from the process's memory map; a workload the
harness runs has exited by then, so every user frame of a `-c CMD` profile prints as a raw
address (bpftrace issue 246; perf avoids it by recording the process's mmaps). So the harness
reads the workload's /proc/PID/maps while it runs (the last read after its exec wins) and, after
the run, names each raw address that falls in a mapped file from that file's ELF symbols
(.symtab and .dynsym, read with pyelftools), as bpftrace does: `symbol+offset`. Addresses outside
any file mapping (JIT code, garbage from code built without frame pointers) stay as printed.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.output.model import MapPrint, Output, Stack

RAW = re.compile(r"0x([0-9a-fA-F]+)\Z")
_MAPS_LINE = re.compile(r"([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(/.*)\Z")


@dataclass(frozen=True)
class Mapping:
    """One file-backed line of /proc/PID/maps."""

    start: int
    end: int
    offset: int
    path: str


def parse_maps(text: str) -> list[Mapping]:
    """The file-backed mappings of a /proc/PID/maps text, by start address."""
    found = []
    for line in text.splitlines():
        m = _MAPS_LINE.match(line.strip())
        if m and not m.group(4).endswith(" (deleted)"):
            start, end, offset = (int(m.group(i), 16) for i in (1, 2, 3))
            found.append(Mapping(start, end, offset, m.group(4)))
    return sorted(found, key=lambda mp: mp.start)


class MapsWatch:
    """The last memory map of `pid` read after its exec.

    Made while the workload waits at the gate: its command line then is the gate's, and reads
    taken while it still is are ignored. `poll()` is cheap (two small /proc reads) and is called
    while the run lasts."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self._cmdline()
        self.maps: list[Mapping] | None = None

    def _cmdline(self) -> bytes | None:
        try:
            return Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return None

    def poll(self) -> None:
        try:
            text = Path(f"/proc/{self.pid}/maps").read_text()
        except OSError:  # gone
            return
        cmdline = self._cmdline()
        if cmdline and cmdline != self.before:
            maps = parse_maps(text)
            if maps:  # a zombie's map is empty
                self.maps = maps


@dataclass(frozen=True)
class _Symbols:
    """A file's function symbols by address, and its loaded segments (file offset -> vaddr)."""

    starts: list[int]
    ends: list[int]
    names: list[str]
    loads: list[tuple[int, int, int]]  # (file offset, file size, vaddr) of each PT_LOAD


@functools.lru_cache(maxsize=256)
def _symbols(path: str) -> _Symbols | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            loads = [(s["p_offset"], s["p_filesz"], s["p_vaddr"])
                     for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            funcs: dict[int, tuple[int, str]] = {}
            for table in (".dynsym", ".symtab"):  # .symtab's (local) names win
                section = elf.get_section_by_name(table)
                if section is None or not hasattr(section, "iter_symbols"):
                    continue
                for sym in section.iter_symbols():
                    kind = sym["st_info"]["type"]
                    if kind in ("STT_FUNC", "STT_GNU_IFUNC") and sym["st_value"] and sym.name:
                        funcs[sym["st_value"]] = (max(sym["st_size"], 1), sym.name)
    except (OSError, ELFError, ValueError):
        return None
    ordered = sorted(funcs.items())
    return _Symbols(
        [a for a, _ in ordered], [a + size for a, (size, _) in ordered],
        [name for _, (_, name) in ordered], loads,
    )


def name(address: int, maps: list[Mapping]) -> str | None:
    """`symbol+offset` for an address in one of `maps`, or None when no symbol covers it."""
    at = bisect.bisect_right([mp.start for mp in maps], address) - 1
    if at < 0 or address >= maps[at].end:
        return None
    mp = maps[at]
    symbols = _symbols(mp.path)
    if symbols is None:
        return None
    file_offset = address - mp.start + mp.offset
    vaddr = next((va + file_offset - off for off, size, va in symbols.loads
                  if off <= file_offset < off + size), None)
    if vaddr is None:
        return None
    i = bisect.bisect_right(symbols.starts, vaddr) - 1
    if i < 0 or vaddr >= symbols.ends[i]:
        return None
    return f"{symbols.names[i]}+{vaddr - symbols.starts[i]}"


def names(frames: Iterable[str], maps: list[Mapping]) -> dict[str, str]:
    """Raw-address frames (`0x7f...`) -> `symbol+offset`, for those a mapped file names."""
    found = {}
    for frame in set(frames):
        m = RAW.match(frame)
        if m:
            named = name(int(m.group(1), 16), maps)
            if named is not None:
                found[frame] = named
    return found


class WorkloadFrames:
    """Names the raw user frames of a run whose every user stack is the workload's (its
    program filters on the workload's pid), on the host: `program` and `ticking` wrap what the
    runner is given, `apply` renames the frames of the parsed output and says so in a warning.
    """

    def __init__(self) -> None:
        self.watch: MapsWatch | None = None

    def program(self, source: str | Callable[[int | None], str]) -> Callable[[int | None], str]:
        def text(pid: int | None) -> str:
            if pid is not None:
                self.watch = MapsWatch(pid)
            return source(pid) if callable(source) else source

        return text

    def ticking(self, on_progress: Callable[[float], None] | None) -> Callable[[float], None]:
        def tick(elapsed: float) -> None:
            if self.watch is not None:
                self.watch.poll()
            if on_progress is not None:
                on_progress(elapsed)

        return tick

    def apply(self, output: Output | None) -> int:
        """Rename the raw frames the workload's last map names; how many frames changed."""
        if output is None or self.watch is None or not self.watch.maps:
            return 0
        raw = [f for mp in output.maps for stack in _stacks(mp) for f in stack if RAW.match(f)]
        table = names(raw, self.watch.maps)
        if not table:
            return 0
        for mp in output.maps:
            mp.packed_keys = [_renamed(k, table) for k in mp.packed_keys]
            if mp.kind == "stack":
                mp.values = [_renamed(v, table) for v in mp.values]
        changed = sum(1 for f in raw if f in table)
        output.warnings.append(
            f"harness: {changed} of {len(raw)} raw user frames named from the workload's memory "
            f"map (pid {self.watch.pid}, read while it ran): bpftrace names user frames when it "
            "prints, after the workload has exited"
        )
        return changed


def _stacks(mp: MapPrint) -> Iterator[Stack]:
    for packed in mp.packed_keys:
        if isinstance(packed, Stack):
            yield packed
        elif type(packed) is tuple:
            yield from (p for p in packed if isinstance(p, Stack))
    if mp.kind == "stack":
        yield from (v for v in mp.values if isinstance(v, Stack))


def _renamed(part: Any, table: dict[str, str]) -> Any:
    """A key part or value with its stack's frames renamed (anything else as it is)."""
    if isinstance(part, Stack):
        return Stack(table.get(f, f) for f in part)
    if type(part) is tuple:
        return tuple(_renamed(p, table) for p in part)
    return part

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
import ctypes
import ctypes.util
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
            _add_functions(elf, funcs)
            debug = _debug_file(elf)
        if debug is not None:  # a stripped library's local names (libc6-dbg), as bcc reads them
            with open(debug, "rb") as f:
                _add_functions(ELFFile(f), funcs)
    except (OSError, ELFError, ValueError):
        return None
    ordered = sorted(funcs.items())
    return _Symbols(
        [a for a, _ in ordered], [a + size for a, (size, _) in ordered],
        [name for _, (_, name) in ordered], loads,
    )


def _add_functions(elf: Any, funcs: dict[int, tuple[int, str]]) -> None:
    """The function symbols of .dynsym, then .symtab (its local names win), by address, without
    their symbol versions."""
    for table in (".dynsym", ".symtab"):
        section = elf.get_section_by_name(table)
        if section is None or not hasattr(section, "iter_symbols"):
            continue
        for sym in section.iter_symbols():
            kind = sym["st_info"]["type"]
            if kind in ("STT_FUNC", "STT_GNU_IFUNC") and sym["st_value"] and sym.name:
                # a debug file's .symtab keeps symbol versions (`clock_nanosleep@@GLIBC_2.17`)
                funcs[sym["st_value"]] = (max(sym["st_size"], 1), sym.name.partition("@")[0])


DEBUG_ROOT = Path("/usr/lib/debug/.build-id")


def _debug_file(elf: Any) -> Path | None:
    """The separate debug file of an ELF file by its build id (Debian's -dbg packages), if any."""
    section = elf.get_section_by_name(".note.gnu.build-id")
    if section is None or not hasattr(section, "iter_notes"):
        return None
    for note in section.iter_notes():
        if note["n_type"] == "NT_GNU_BUILD_ID" and isinstance(note["n_desc"], str):
            build_id = note["n_desc"]
            path = DEBUG_ROOT / build_id[:2] / f"{build_id[2:]}.debug"
            return path if path.is_file() else None
    return None


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
    return f"{demangle(symbols.names[i])}+{vaddr - symbols.starts[i]}"


@functools.lru_cache(maxsize=1)
def _cxa_demangle() -> Any:
    """libstdc++'s demangler and libc's free, as bpftrace names C++ (and legacy Rust) frames;
    None where libstdc++ cannot be loaded."""
    try:
        cxx = ctypes.CDLL(ctypes.util.find_library("stdc++") or "libstdc++.so.6")
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    demangler = cxx.__cxa_demangle
    demangler.restype = ctypes.c_void_p
    demangler.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                          ctypes.POINTER(ctypes.c_int)]
    libc.free.argtypes = [ctypes.c_void_p]
    return demangler, libc.free


@functools.lru_cache(maxsize=65536)
def demangle(symbol: str) -> str:
    """`_ZN4demo7run_forEd` -> `demo::run_for(double)`, as bpftrace prints a named frame; a
    symbol that is not a mangled C++ name (or cannot be demangled) is returned as it is."""
    tools = _cxa_demangle() if symbol.startswith("_Z") else None
    if tools is None:
        return symbol
    demangler, free = tools
    status = ctypes.c_int(1)
    out = demangler(symbol.encode(), None, None, ctypes.byref(status))
    if not out:
        return symbol
    try:
        text = ctypes.string_at(out).decode("utf-8", "replace")
    finally:
        free(out)
    return text if status.value == 0 else symbol


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

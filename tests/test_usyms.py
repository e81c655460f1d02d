"""Naming the user frames of an exited workload: harness.host.usyms against the dynamic linker's
own answer (dladdr) in this very process, and its watch of a gated workload's memory map."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

from harness.host import usyms
from harness.host.workload import GatedWorkload


class DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def test_names_agree_with_the_dynamic_linker() -> None:
    libc = ctypes.CDLL("libc.so.6")
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    maps = usyms.parse_maps(Path("/proc/self/maps").read_text())
    functions = [getattr(libc, n) for n in ("getppid", "clock_nanosleep", "malloc", "qsort")]
    functions.append(ctypes.pythonapi.Py_IsInitialized)  # in the interpreter or libpython
    for function in functions:
        address = ctypes.cast(function, ctypes.c_void_p).value
        assert address is not None
        for offset in (0, 3, 17):
            info = DlInfo()
            assert libc.dladdr(address + offset, ctypes.byref(info))
            assert info.dli_sname is not None and info.dli_saddr is not None
            named = usyms.name(address + offset, maps)
            assert named is not None, (function, offset)
            symbol, _, off = named.rpartition("+")
            assert int(off) == address + offset - info.dli_saddr, named
            # the same function, whichever of its aliases each picked
            alias = ctypes.cast(getattr(ctypes.CDLL(info.dli_fname.decode()), symbol),
                                ctypes.c_void_p).value
            assert alias == info.dli_saddr, (named, info.dli_sname)


def test_addresses_outside_a_file_stay_as_printed() -> None:
    maps = usyms.parse_maps(Path("/proc/self/maps").read_text())
    heap = id(object())  # an object on the heap
    assert usyms.name(heap, maps) is None
    assert usyms.name(0x10, maps) is None and usyms.name(0xFFFFFFFF81000000, maps) is None
    assert usyms.names(["0x10", "read_zero+55", f"0x{heap:x}"], maps) == {}


def test_the_watch_keeps_the_map_of_the_command_not_the_gates() -> None:
    work = GatedWorkload(["sleep", "0.5"])
    try:
        watch = usyms.MapsWatch(work.pid)
        watch.poll()
        assert watch.maps is None  # still the gate's interpreter
        work.go()
        for _ in range(100):
            watch.poll()
            if watch.maps is not None:
                break
            __import__("time").sleep(0.01)
        assert watch.maps is not None
        assert any(Path(m.path).name == "sleep" for m in watch.maps)
        assert not any(m.path == os.path.realpath(sys.executable) for m in watch.maps)
        work.wait(10)
        watch.poll()  # gone: the last map stays
        assert any(Path(m.path).name == "sleep" for m in watch.maps)
    finally:
        work.close()


def test_cxx_names_demangled_as_cxxfilt_does() -> None:
    """Names of an exited workload's C++ frames read as bpftrace prints them (demangled): each
    of libstdc++'s own mangled function names equals binutils' c++filt's reading."""
    import ctypes.util
    import shutil
    import subprocess

    from elftools.elf.elffile import ELFFile

    assert shutil.which("c++filt"), "c++filt (binutils) is needed for the independent reading"
    lib = ctypes.util.find_library("stdc++")
    assert lib is not None
    path = next(p for p in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64")
                if (Path(p) / lib).exists())
    with open(Path(path) / lib, "rb") as f:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        mangled = sorted({s.name for s in dynsym.iter_symbols()
                          if s.name.startswith("_Z") and s["st_info"]["type"] == "STT_FUNC"})
    assert len(mangled) > 1000
    sample = mangled[:: len(mangled) // 500]
    expected = subprocess.run(["c++filt"], input="\n".join(sample), capture_output=True,
                              text=True, check=True).stdout.splitlines()
    # libstdc++ writes the standard abbreviations (std::string, std::istream) that c++filt
    # spells out (std::basic_string<char, ...>): those are compared by their other names
    pairs = [(m, e) for m, e in zip(sample, expected, strict=True) if "std::basic_" not in e]
    assert len(pairs) > 300
    assert [usyms.demangle(m) for m, _ in pairs] == [e for _, e in pairs]
    assert usyms.demangle("_ZNKSi6gcountEv") == "std::istream::gcount() const"
    assert usyms.demangle("main") == "main" and usyms.demangle("_Znot_mangled") == "_Znot_mangled"

"""One cache-keyed C build for everything the harness compiles: the workloads' C programs
(harness.workloads.native) and the libbpf twins' BPF objects, skeletons and loaders
(harness.twin.build).

They are one idea: C made from known inputs, kept until one of them changes. So there is one
key and one way to make an entry. The key hashes everything that goes in: the sources' and
headers' bytes (or a generated text), each compiler's identity (the binary it resolves to,
its size and modification time) and every flag; an edit of any of them is a new entry, an
equal build is a lookup. An entry, `cache_root()/NAME-KEY/`, is made in a private work
directory beside it and published by one rename, under a lock of its own: concurrent first
builds wait for one another instead of compiling the same thing twice, nobody sees half an
entry, and a failed build leaves nothing.

What differs stays with the callers: the compiler calls themselves, and how a failure is said
(a workload that cannot be built falls back to its Python twin; a twin that cannot be built is
a BuildError naming the fix).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from harness.paths import cache_home, locked

KEY_CHARS = 20  # hex digits of sha256 naming an entry


def cache_root() -> Path:
    """Where the entries are: `cache_home()/build`."""
    return cache_home() / "build"


def compiler_identity(tool: str) -> str:
    """`tool` as a key sees it: the file it resolves to (through PATH and symlinks: `cc` is
    gcc-12 here), with that file's size and modification time; '' when it is not installed.
    Another compiler, or an upgraded one, builds anew, and nothing is run to find out: a
    workload that looks up its binary (syscall_loop.py, in a TCG guest too) spawns no
    `cc --version` first."""
    found = shutil.which(tool)
    if found is None:
        return ""
    real = os.path.realpath(found)
    st = os.stat(real)
    return f"{real} {st.st_size} {st.st_mtime_ns}"


def cache_key(
    *,
    files: Iterable[Path] = (),
    texts: Mapping[str, str] | None = None,
    compilers: Iterable[str] = (),
    flags: Iterable[str] = (),
) -> str:
    """The hash of a build's inputs: `files` (sources and headers, by name and bytes), `texts`
    (generated sources, or what stands for a large input, by name), the `compilers`' identities
    and the `flags`, in order."""
    h = hashlib.sha256()
    for path in files:
        h.update(b"file\0" + path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for name, text in (texts or {}).items():
        h.update(b"text\0" + name.encode() + b"\0" + text.encode() + b"\0")
    for tool in compilers:
        h.update(b"compiler\0" + compiler_identity(tool).encode() + b"\0")
    for flag in flags:
        h.update(b"flag\0" + flag.encode() + b"\0")
    return h.hexdigest()[:KEY_CHARS]


def cached(entry: str, make: Callable[[Path], None]) -> Path:
    """The entry `cache_root()/entry` (a directory), made by `make(work)` the first time: `make`
    writes the products into `work`, a new directory beside the entry, which then becomes the
    entry by one rename. Whatever `make` raises leaves no entry and no work directory."""
    out = cache_root() / entry
    if out.is_dir():  # published whole, by a rename
        return out
    with locked(cache_root() / f"{entry}.lock"):
        if out.is_dir():  # another process made it while this one waited
            return out
        work = Path(tempfile.mkdtemp(prefix=f"{entry}.", suffix=".tmp", dir=cache_root()))
        try:
            make(work)
            work.replace(out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out

"""Workloads compiled here from the package's C sources, once per source, compiler and flags:
the binary is an entry of the one C build cache (harness.cbuild,
`cache_home()/build/NAME-KEY/NAME-KEY`), so an edit rebuilds it and nothing else does.

Why: a guest kept up by `harness lane up` runs under TCG, where a Python's start-up alone takes
1-2 s of each run; udp_send.c (the C twin of udp_send.py: same options, output and event count)
starts in milliseconds. The guest shares this machine's root filesystem, so a binary built here
with the system's toolchain runs there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.cbuild import cache_key, cached
from harness.paths import WORKLOADS

OPTIMIZE = ("-O2",)
NAME_KEY = 12  # hex digits of the key in the binary's name (its comm keeps 15 characters)


class NoBuild(Exception):
    """No C compiler here, or the source would not compile: the one-line reason."""


def build(source: Path, flags: tuple[str, ...] = (), headers: tuple[Path, ...] = ()
          ) -> Path | None:
    """A workload's C source compiled into the cache ($CC, else cc), rebuilt when the source,
    a header it includes (`headers`), the compiler or the flags change; None when no compiler
    is available (NoBuild when the compiler refuses it)."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        return None
    cflags = (*OPTIMIZE, *flags)
    key = cache_key(files=(source, *headers), compilers=(cc,), flags=cflags)
    name = f"{source.stem}-{key[:NAME_KEY]}"

    def make(work: Path) -> None:
        done = subprocess.run([cc, *cflags, "-o", str(work / name), str(source)],
                              capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
            raise NoBuild(f"{cc} could not build {source.name}: {said}")

    return cached(name, make) / name


def native_argv(argv: list[str] | None) -> tuple[list[str] | None, str]:
    """`[python, .../workloads/udp_send.py, ARGS...]` as `[udp_send binary, ARGS...]` (its C
    twin, built once), and '' ; any other argv as it is, and ''. When the C twin cannot be
    built, the argv as it is and a warning that says why."""
    if not argv or len(argv) < 2 or Path(argv[1]) != WORKLOADS / "udp_send.py":
        return argv, ""
    try:
        binary = build(WORKLOADS / "udp_send.c")
        why = "no C compiler here (cc; install gcc)" if binary is None else ""
    except (NoBuild, OSError) as err:
        binary, why = None, str(err)
    if binary is None:
        return argv, (f"the workload ran as udp_send.py, not its C twin udp_send.c ({why}): "
                      "a Python's start adds 1-2 s to a run in a TCG guest")
    return [str(binary), *argv[2:]], ""

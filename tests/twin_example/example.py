"""The hand-written ktrace twin (ktrace.bpf.c and its skeleton loader ktrace.c), kept as a
readable example of what codegen_c generates for the `ktrace` spec and as the reference a test
compares the generated twin with.

It is run and decoded like every generated twin: its loader prints the same map dump
(mapdump.h), and the layouts below hand it to generic.py's one decoder, which turns it into the
frames of the catalog entry (@stacks by kstack, @hash by skb->hash, @len as a log2 hist).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.host.symbols import Kallsyms
from harness.spec.codegen_c import KeyField, TwinMap, TwinProgram
from harness.twin.generic import LoaderProcess, MapDump, twin_frames

if TYPE_CHECKING:
    import pandas as pd

STACKS_MAP = "stack_traces"
# The maps of ktrace.bpf.c (every key 8 bytes, every value a __u64 count), as spec maps.
PROGRAM = TwinProgram(
    text="",
    maps=(
        TwinMap("@stacks", "stack_counts", "count", (KeyField("kstack", "stack_id", "kstack"),)),
        TwinMap("@hash", "hash_counts", "collect", (KeyField("int", "hash", "hash"),)),
        TwinMap("@len", "len_hist", "hist", (KeyField("slot", "slot"),)),
    ),
    probe="ktrace",
)


def start(
    loader: Path, attach: str, pid: int | None, func: str | None = None, verbose: bool = False
) -> LoaderProcess:
    """The hand-written loader attached as `attach` (kprobe, kfunc, tracepoint) for `pid`."""
    argv = [str(loader), "--attach", attach]
    argv += ["--pid", str(pid)] if pid else []
    argv += ["--func", func] if func else []
    argv += ["--verbose"] if verbose else []
    return LoaderProcess(argv)


def frames(
    dumps: Mapping[str, MapDump], symbols: Kallsyms | None = None
) -> dict[str, pd.DataFrame]:
    """The example's maps as the catalog entry's frames, decoded by the generic reader."""
    return twin_frames(PROGRAM, dumps, symbols, stacks_map=STACKS_MAP)[0]

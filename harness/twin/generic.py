"""A twin's loader as a child process, and its map dump decoded into frames: the one decoder.

One loader (twinload.c) serves every generated twin, and the hand-written example's loader
(tests/twin_example/ktrace.c) prints the same dump (mapdump.h): each map's raw keys and per-CPU
values. The layout the C generator chose (harness.spec.codegen_c.TwinMap; the example's own
layout for its maps) turns them back into the same frames bpftrace's output becomes: the spec's
key columns, `value`, `count/average/total` for stats, `lo/hi/count` for hist and lhist. Kernel
stacks are symbolised like bpftrace's `kstack` (`name+offset`, leaf first); user stacks print as
bpftrace prints them once the process is gone (`0x...`).
"""

from __future__ import annotations

import contextlib
import select
import struct
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.host.lifetime import reap, spawn
from harness.host.symbols import Kallsyms, kallsyms
from harness.spec.codegen_c import DROPS_MAP, STACKS_MAP, TwinMap, TwinProgram
from harness.spec.model import Probe
from harness.twin.loader import LoaderError, explain_loader_failure

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class MapDump:
    """One map as the loader printed it: raw keys and values (per-CPU values concatenated)."""

    name: str
    type: int
    key_size: int
    value_size: int
    ncpus: int
    entries: list[tuple[bytes, bytes]] = field(default_factory=list)

    def per_cpu(self, value: bytes) -> Iterator[bytes]:
        stride = (self.value_size + 7) // 8 * 8 if self.ncpus > 1 else self.value_size
        for i in range(self.ncpus):
            yield value[i * stride : i * stride + self.value_size]


def parse_dump(text: str) -> dict[str, MapDump]:
    """The loader's `map`/`e` lines -> dumps by BPF map name; the format is ours, so an unknown
    line is an error, and so is a dump without its final `done`."""
    maps: dict[str, MapDump] = {}
    current: MapDump | None = None
    done = False
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "map":
            name, typ, ksize, vsize, ncpus = rest.split()
            current = maps[name] = MapDump(name, int(typ), int(ksize), int(vsize), int(ncpus))
        elif kind == "e" and current is not None:
            key, value = rest.split()
            current.entries.append((bytes.fromhex(key), bytes.fromhex(value)))
        elif kind == "done":
            done = True
        elif kind != "ready" and line.strip():
            raise LoaderError(f"unexpected twin loader output line: {line[:80]!r}", "rebuild it")
    if not done:
        raise LoaderError("the twin loader stopped before printing 'done'", "see its stderr")
    return maps


class LoaderProcess:
    """A twin's loader as a child: start, wait for `ready`, `stop` on the control pipe, decode.

    Closing stdin ends the loader (and its BPF links) even when this process dies first; a
    loader that hangs dies with the harness all the same (harness.host.lifetime.spawn).
    """

    def __init__(self, argv: list[str]) -> None:
        self.started = time.monotonic()
        self.attached: float | None = None
        self.proc = spawn(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    @property
    def attach_s(self) -> float | None:
        return None if self.attached is None else self.attached - self.started

    def wait_attached(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if line.startswith("ready"):
            self.attached = time.monotonic()
            return
        still_loading = not ready and self.proc.poll() is None
        self.stop_quietly()
        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
        if still_loading or not (line or err):
            # libbpf's log then ends wherever loading had got to ("map ... created
            # successfully"): that is no failure to report.
            raise LoaderError(f"twin loader not attached after {timeout:g}s",
                              "raise --timeout (loading and attaching take about a second)")
        raise explain_loader_failure(err)

    def stop(self, timeout: float = 30.0) -> tuple[dict[str, MapDump], str]:
        """Detach, read every map; returns the dumps and the loader's stderr (libbpf's log)."""
        try:
            out, err = self.proc.communicate(b"stop\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_quietly()
            raise LoaderError("twin loader did not stop", "kill it and retry") from None
        reap(self.proc)
        if self.proc.returncode != 0:
            raise explain_loader_failure(err.decode())
        return parse_dump(out.decode()), err.decode()

    def stop_quietly(self) -> None:
        """Close the control pipe (the loader detaches and exits), then make sure it is gone."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        reap(self.proc)


class TwinLoader(LoaderProcess):
    """twinload running one generated twin's object, its rodata `settings` filled in."""

    def __init__(
        self,
        loader: Path,
        obj: Path,
        settings: Mapping[str, int] | None = None,
        func: str | None = None,
        verbose: bool = False,
    ) -> None:
        argv = [str(loader), str(obj)]
        for name, value in (settings or {}).items():
            argv += ["--set", f"{name}={int(value)}"]
        if func:
            argv += ["--func", func]
        if verbose:
            argv.append("--verbose")
        super().__init__(argv)


def read_tracepoint_format(probe: Probe) -> str:
    """The tracepoint's format file (the record layout the twin's struct is generated from)."""
    category, name = probe.target.split(":")
    for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        path = Path(root) / "events" / category / name / "format"
        try:
            return path.read_text()
        except OSError:
            continue
    raise LoaderError(
        f"no format file for {probe.text()} under /sys/kernel/tracing/events",
        "check the name (bpftrace -l 'tracepoint:CATEGORY:*') and that tracefs is mounted",
    )


# --- decoding ----------------------------------------------------------------------------------


def _u64(b: bytes) -> int:
    return int(struct.unpack("<Q", b[:8])[0])


def _s64(b: bytes) -> int:
    return int(struct.unpack("<q", b[:8])[0])


def slot_bounds(slot: int) -> tuple[int | None, int | None]:
    """bpftrace's log2 slot -> [lo, hi) as the text output prints it (open end = None)."""
    if slot == 0:
        return None, 0
    if slot == 1:
        return 0, 1
    return 1 << (slot - 2), 1 << (slot - 1)


def _trunc_div(total: int, count: int) -> int:
    """Integer average rounded toward zero (C division), not Python's floor."""
    q = abs(total) // count
    return q if total >= 0 else -q


class StackTable:
    """Stack id -> frames, leaf first: kernel addresses symbolised, user addresses in hex."""

    def __init__(self, dump: MapDump | None, symbols: Kallsyms | None) -> None:
        self.ips: dict[int, list[int]] = {}
        self.symbols = symbols
        if dump is not None:
            for key, value in dump.entries:
                ips = struct.unpack(f"<{len(value) // 8}Q", value)
                self.ips[int.from_bytes(key, "little")] = _until_zero(ips)

    def kernel(self, stack_id: int, mode: str = "bpftrace") -> tuple[str, ...]:
        """Frames as bpftrace prints them in `mode`: `name+off`, perf's `addr name+off`, or
        raw's bare `addr`."""
        ips = self.ips.get(stack_id, [])
        if mode == "raw":
            return tuple(f"{ip:x}" for ip in ips)
        syms = self.symbols
        if syms is None:
            syms = self.symbols = kallsyms()
        if mode == "perf":
            return tuple(f"{ip:x} {syms.symbolize(ip)}" for ip in ips)
        return tuple(syms.symbolize(ip) for ip in ips)

    def user(self, stack_id: int, mode: str = "bpftrace") -> tuple[str, ...]:
        form = "{:x}" if mode == "raw" else "0x{:x}"
        return tuple(form.format(ip) for ip in self.ips.get(stack_id, []))


def _until_zero(ips: tuple[int, ...]) -> list[int]:
    out = []
    for ip in ips:
        if ip == 0:
            break
        out.append(ip)
    return out


def _decode_keys(tmap: TwinMap, key: bytes, stacks: Mapping[str, StackTable]
                 ) -> tuple[list[Any], int | None]:
    """One raw key -> (key column values, hist slot or None)."""
    values: list[Any] = []
    slot = None
    at = 0
    for kf in tmap.keys:
        raw = key[at : at + kf.size]
        at += kf.size
        if kf.kind == "int":
            values.append(_s64(raw))
        elif kf.kind == "comm":
            values.append(raw.split(b"\0", 1)[0].decode("utf-8", "replace"))
        elif kf.kind == "kstack":
            values.append(stacks[kf.stack_map].kernel(_s64(raw), kf.mode))
        elif kf.kind == "ustack":
            values.append(stacks[kf.stack_map].user(_s64(raw), kf.mode))
        elif kf.kind == "slot":
            slot = _u64(raw)
    return values, slot


def _bounds(tmap: TwinMap, slot: int) -> tuple[int | None, int | None]:
    if tmap.func == "hist":
        return slot_bounds(slot)
    assert tmap.lhist is not None
    lo, hi, step = tmap.lhist
    last = (hi - lo) // step + 1
    if slot == 0:
        return None, lo
    if slot >= last:
        return hi, None
    return lo + (slot - 1) * step, lo + slot * step


def _reduce(tmap: TwinMap, dump: MapDump, value: bytes) -> tuple[int, ...] | None:
    """Per-CPU values -> this map's value: count/sum summed, min/max over CPUs that saw one,
    avg/stats as (count, average, total). None when no CPU saw an extreme."""
    cpus = list(dump.per_cpu(value))
    if tmap.func in ("count", "hist", "lhist", "collect"):
        return (sum(_u64(c) for c in cpus),)
    if tmap.func == "sum":
        return (sum(_s64(c) for c in cpus),)
    if tmap.func in ("min", "max"):
        seen = [_s64(c) for c in cpus if _u64(c[8:16])]
        if not seen:
            return None
        return (min(seen) if tmap.func == "min" else max(seen),)
    total = sum(_s64(c) for c in cpus)
    count = sum(_u64(c[8:16]) for c in cpus)
    return (count, _trunc_div(total, count) if count else 0, total)


def map_frame(tmap: TwinMap, dump: MapDump, stacks: Mapping[str, StackTable]) -> pd.DataFrame:
    """One twin map -> the frame bpftrace's printing of the same map becomes."""
    import numpy as np
    import pandas as pd

    cols = tmap.columns
    if tmap.func in ("hist", "lhist"):
        buckets: dict[tuple[Any, ...], dict[int, int]] = defaultdict(dict)
        for key, value in dump.entries:
            keys, slot = _decode_keys(tmap, key, stacks)
            reduced = _reduce(tmap, dump, value)
            assert slot is not None and reduced is not None
            if reduced[0]:
                buckets[tuple(keys)][slot] = reduced[0]
        rows = [
            (*k, *_bounds(tmap, s), n)
            for k, slots in buckets.items()
            for s, n in sorted(slots.items())
        ]
        data: dict[str, Any] = {c: _column([r[i] for r in rows]) for i, c in enumerate(cols)}
        data["lo"] = pd.array([r[len(cols)] for r in rows], dtype="Int64")
        data["hi"] = pd.array([r[len(cols) + 1] for r in rows], dtype="Int64")
        data["count"] = np.asarray([r[-1] for r in rows], dtype="int64")
        return pd.DataFrame(data, columns=[*cols, "lo", "hi", "count"])
    out_rows = []
    for key, value in dump.entries:
        keys, _ = _decode_keys(tmap, key, stacks)
        reduced = _reduce(tmap, dump, value)
        if reduced is not None:
            out_rows.append((*keys, *reduced))
    data = {c: _column([r[i] for r in out_rows]) for i, c in enumerate(cols)}
    n = len(cols)
    if tmap.func == "stats":
        for i, name in enumerate(("count", "average", "total")):
            data[name] = np.asarray([r[n + i] for r in out_rows], dtype="int64")
        return pd.DataFrame(data, columns=[*cols, "count", "average", "total"])
    pick = 1 if tmap.func == "avg" else 0
    data["value"] = np.asarray([r[n + pick] for r in out_rows], dtype="int64")
    return pd.DataFrame(data, columns=[*cols, "value"])


def _column(values: list[Any]) -> Any:
    import numpy as np

    if values and all(isinstance(v, int) for v in values):
        return np.asarray(values, dtype="int64")
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def twin_frames(
    program: TwinProgram,
    dumps: Mapping[str, MapDump],
    symbols: Kallsyms | None = None,
    stacks_map: str = STACKS_MAP,
) -> tuple[dict[str, pd.DataFrame], int]:
    """Every spec map's frame from the loader's dump, and the events dropped (full maps).
    `stacks_map` names the stack-trace map of keys cut to no limit (kstack, ustack); a key
    with a frame limit (`kstack(8)`) names its own map."""
    table = StackTable(dumps.get(stacks_map), symbols)
    stacks = {"": table, STACKS_MAP: table}
    for tmap in program.maps:
        for kf in tmap.keys:
            if kf.stack_map and kf.stack_map not in stacks:
                stacks[kf.stack_map] = StackTable(dumps.get(kf.stack_map), symbols)
    frames = {}
    for tmap in program.maps:
        dump = dumps.get(tmap.bpf_name)
        if dump is None:
            raise LoaderError(f"the twin loader printed no map {tmap.bpf_name}", "rebuild the twin")
        frames[tmap.spec_map] = map_frame(tmap, dump, stacks)
    return frames, counters(dumps)[0]


def counters(dumps: Mapping[str, MapDump]) -> tuple[int, int]:
    """(events dropped for a full map, new-key inserts retried after losing a race to another
    CPU): the twin's own bookkeeping, summed over CPUs."""
    totals = [0, 0]
    drops = dumps.get(DROPS_MAP)
    if drops is not None:
        for key, value in drops.entries:
            index = int.from_bytes(key, "little")
            if index < 2:
                totals[index] += sum(_u64(c) for c in drops.per_cpu(value))
    return totals[0], totals[1]

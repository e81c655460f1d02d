"""Run the libbpf twin's loader and read its line format (ktrace.h) into records and frames.

Kernel stacks arrive as addresses and are symbolized here from /proc/kallsyms the way bpftrace
prints `kstack` (`name+decimal offset`, leaf first), so both sides of a crosscheck compare equal.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.host.lifetime import die_with_parent
from harness.host.symbols import Kallsyms, kallsyms
from harness.twin.build import ARCH_GOTCHA, explain_build_failure

if TYPE_CHECKING:
    import pandas as pd


class LoaderError(HarnessError):
    """The libbpf loader failed to load, attach or report."""


@dataclass
class TwinRecords:
    """What the loader printed, decoded: the raw material of the twin's frames."""

    attach: str
    events: list[tuple[int, int]] = field(default_factory=list)  # (hash, len)
    stacks: Counter[tuple[str, ...]] = field(default_factory=Counter)
    hist: dict[int, int] = field(default_factory=dict)  # bpftrace log2 slot -> count
    lost: int = 0
    log: str = ""


def slot_bounds(slot: int) -> tuple[int | None, int | None]:
    """bpftrace's log2 slot -> [lo, hi) as the text output prints it (open end = None)."""
    if slot == 0:
        return None, 0
    if slot == 1:
        return 0, 1
    return 1 << (slot - 2), 1 << (slot - 1)


def parse_loader_output(text: str, attach: str, symbols: Kallsyms | None = None) -> TwinRecords:
    """Decode the documented line format; unknown lines are an error (the format is ours)."""
    rec = TwinRecords(attach=attach)
    syms = symbols or kallsyms()
    done = False
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "event":
            h, n = rest.split()
            rec.events.append((int(h), int(n)))
        elif kind == "stack":
            count, addrs = rest.split(" ", 1) if " " in rest else (rest, "")
            frames = tuple(syms.symbolize(int(a, 16)) for a in addrs.split(",") if a)
            rec.stacks[frames] += int(count)
        elif kind == "hist":
            s, c = rest.split()
            rec.hist[int(s)] = int(c)
        elif kind == "lost":
            rec.lost = int(rest)
        elif kind == "done":
            done = True
        elif kind != "ready" and line.strip():
            raise LoaderError(f"unexpected loader output line: {line!r}", "rebuild the twin")
    if not done:
        raise LoaderError("the loader stopped before printing 'done'", "see its stderr")
    return rec


class TwinProcess:
    """The loader as a child process: start, wait for `ready`, stop with SIGINT, decode."""

    def __init__(
        self,
        loader: Path,
        attach: str,
        pid: int | None,
        verbose: bool = False,
        func: str | None = None,
    ) -> None:
        self.attach = attach
        argv = [str(loader), "--attach", attach]
        if func:
            argv += ["--func", func]
        if pid:
            argv += ["--pid", str(pid)]
        if verbose:
            argv.append("--verbose")
        # The loader exits when this pipe closes (--control-stdin) and is SIGKILLed with the
        # harness (PDEATHSIG): its BPF program and link never outlive us.
        argv.append("--control-stdin")
        self.started = time.monotonic()
        self.attached: float | None = None
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )

    def wait_attached(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if line.startswith("ready"):
            self.attached = time.monotonic()
            return
        self.stop_quietly()
        err = self.proc.stderr.read().decode() if self.proc.stderr else ""
        if time.monotonic() >= deadline and not line:
            raise LoaderError(f"libbpf loader not attached after {timeout:g}s", "raise --timeout")
        raise explain_loader_failure(err)

    def stop(self, timeout: float = 15.0) -> TwinRecords:
        """SIGINT makes the loader print its results; the rest of stdout is read to EOF."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_quietly()
            raise LoaderError("libbpf loader did not stop on SIGINT", "kill it and retry") from None
        if self.proc.returncode != 0:
            raise explain_loader_failure(err.decode())
        rec = parse_loader_output(out.decode(), self.attach)
        rec.log = err.decode()
        return rec

    def stop_quietly(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdin is not None:  # the control pipe
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


def explain_loader_failure(stderr: str) -> HarnessError:
    """One line for a loader failure: arch gotcha, missing kprobes, EPERM, or the error line."""
    if ARCH_GOTCHA.search(stderr):
        return explain_build_failure("libbpf load", stderr)
    if "failed to create kprobe" in stderr:
        return LoaderError(
            "kprobes are not built into this kernel (libbpf cannot create the kprobe)",
            "use --attach tracepoint, or --lane vm",
        )
    if "Operation not permitted" in stderr:
        return LoaderError(
            "the kernel refused the BPF program (EPERM: not root, lockdown, or no fentry)",
            "run as root, or choose another attach type",
        )
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")] or stderr.splitlines()
    return LoaderError(
        f"libbpf loader failed: {lines[-1] if lines else 'no output'}", "see its stderr"
    )


def twin_frames(rec: TwinRecords, key_names: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
    """The twin's records as frames with the bpftrace side's schema (@stacks, @hash, @len)."""
    import pandas as pd

    stack_col = (key_names.get("@stacks") or ["key0"])[0]
    hash_col = (key_names.get("@hash") or ["key0"])[0]
    stacks = pd.DataFrame(
        {stack_col: list(rec.stacks), "value": pd.Series(list(rec.stacks.values()), dtype="int64")}
    )
    hashes = Counter(h for h, _ in rec.events)
    hash_frame = pd.DataFrame(
        {
            hash_col: pd.Series(list(hashes), dtype="int64"),
            "value": pd.Series(list(hashes.values()), dtype="int64"),
        }
    )
    slots = sorted(rec.hist)
    bounds = [slot_bounds(s) for s in slots]
    hist = pd.DataFrame(
        {
            "lo": pd.array([lo for lo, _ in bounds], dtype="Int64"),
            "hi": pd.array([hi for _, hi in bounds], dtype="Int64"),
            "count": pd.Series([rec.hist[s] for s in slots], dtype="int64"),
        }
    )
    return {"@stacks": stacks, "@hash": hash_frame, "@len": hist}


_RELO = re.compile(
    r"relo #\d+: matching candidate #\d+ <(\w+)> \[\d+\] (?:struct|union) ([\w.]+) "
    r"\([\d:]+ @ offset (\d+)\)"
)


def core_relocations(log: str) -> dict[str, int]:
    """Field offsets libbpf's CO-RE relocation chose on this kernel, from its debug log.

    e.g. {'sk_buff.len': 112, 'sk_buff.hash': 148}: what makes one .bpf.o run on many kernels.
    """
    return {m.group(2): int(m.group(3)) for m in _RELO.finditer(log) if m.group(1) == "byte_off"}

"""Programs compiled here, run remotely without LLVM: `bpftrace --aot` on the harness's machine,
`bpftrace-aotrt` on the remote.

Under TCG a guest's bpftrace spends 8-10 s (more on a loaded machine) in LLVM before it attaches;
`bpftrace --aot FILE -e PROG` does that work here in a fraction of a second, for the remote's
bpftrace version (the same release must exist here: the system's, or a cached root's), and the
remote's `bpftrace-aotrt FILE` only loads it.

Two limits of AOT shape this module:
- bpftrace refuses some programs (struct casts, such as ktrace's `((struct sk_buff *)arg0)->hash`,
  positional parameters, kaddr/uaddr/cgroupid, USDT): compile() returns the refusal, and the run
  goes to the remote's bpftrace as before, with a warning that says why.
- bpftrace-aotrt (0.17) dies on SIGINT, SIGTERM and SIGHUP without printing its maps. So the
  compiled program gets one probe more, which calls exit() (the path that prints the maps and
  runs END) when the remote's stop wrapper makes a kill(STOP_PID, 0) system call on the
  harness's SIGINT; the attach count includes that probe and a note says so.

A struct cast is not always the end: `((struct sk_buff *)arg0)->hash` reads 4 bytes at the
offset of `hash` in the remote kernel's sk_buff, and bpftrace --aot takes the same read written
without a cast, `(*(arg0 + 148) & 0xffffffff)` (an 8-byte read of a little-endian kernel's
memory, masked to the field's 4), with the offset taken from the remote kernel's own BTF
(harness.lanes.btf). For a spec's program, codegen writes that form from the spec's tree
(harness.spec.codegen.FieldOffsets, asked through harness.spec.plan.Programs.portable) for each
cast of an argument to an unsigned integer member; a run compiled so says which reads it moved
where. A whole program given as text keeps its casts (and runs with the remote's bpftrace).
(bpftrace's portability pass refuses every Cast node, so `(uint32)` and `*(uint32 *)` are
refused too; a kfunc's `args->skb->hash` is accepted, but bpftrace here cannot compile a kfunc
probe for a kernel whose fentry it cannot probe, and would take the field's offset from this
kernel.)

Both ends use this module: the agent (standard library only) writes the wrapper; the harness's
end of a run is harness.lanes.aot_run, which also fills in programs compiled for an earlier run
(harness.lanes.aot_reuse).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from harness.host.lifetime import reap, spawn

AOT_RUNTIME = "bpftrace-aotrt"
# kill(2) with signal 0 on a pid no process can have (above the kernel's pid_max limit, 2^22).
STOP_PROBE = (
    "tracepoint:syscalls:sys_enter_kill /args->pid == {pid} && args->sig == 0/ {{ exit(); }}"
)


def stop_pid(marker: str) -> int:
    """A pid for the stop call, unique per run (from the marker's number), above pid_max."""
    digits = re.sub(r"\D", "", marker) or "0"
    return 5_000_000 + int(digits) % 1_000_000_000


def with_stop_probe(program: str, marker: str) -> str:
    return f"{program.rstrip()}\n{STOP_PROBE.format(pid=stop_pid(marker))}\n"


@dataclass
class Compiled:
    """A program compiled ahead of time (`data`), or why not (`refused`)."""

    data: bytes | None
    refused: str = ""
    seconds: float = 0.0


def compile_program(program: str, marker: str, bpftrace: str = "bpftrace") -> Compiled:
    """`bpftrace --aot` of the program plus its stop probe, with the given local bpftrace."""
    return Compiling(program, marker, bpftrace).result()


class Compiling:
    """compile_program started and not yet waited for (programs compiled in the background,
    harness.lanes.aot_reuse): a child of the harness (harness.host.lifetime.spawn), which
    `result()` or `cancel()` collects. Its stderr goes to a file: nobody reads it meanwhile."""

    def __init__(self, program: str, marker: str, bpftrace: str = "bpftrace") -> None:
        self.workdir = tempfile.mkdtemp(prefix="ktrace-aot-")
        self.out = os.path.join(self.workdir, "program.aot")
        self.t0 = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        self.failed = ""
        try:
            with open(os.path.join(self.workdir, "stderr"), "wb") as err:
                self.proc = spawn([bpftrace, "--aot", self.out, "-e",
                                   with_stop_probe(program, marker)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        except OSError as err:
            self.failed = str(err)

    def result(self, timeout: float = 120.0) -> Compiled:
        try:
            if self.proc is None:
                return Compiled(None, self.failed, time.monotonic() - self.t0)
            try:
                status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                reap(self.proc)
                return Compiled(None, f"bpftrace --aot took more than {timeout:g}s",
                                time.monotonic() - self.t0)
            reap(self.proc)
            took = time.monotonic() - self.t0
            if status == 0 and os.path.isfile(self.out):
                with open(self.out, "rb") as fh:
                    return Compiled(fh.read(), "", took)
            with open(os.path.join(self.workdir, "stderr"), errors="replace") as fh:
                stderr = fh.read()
            errors = [ln.split("ERROR:", 1)[1].strip() for ln in stderr.splitlines()
                      if "ERROR:" in ln and "RLIMIT_MEMLOCK" not in ln]
            why = errors[0] if errors else (stderr.strip().splitlines() or
                                            [f"exit {status}"])[-1]
            return Compiled(None, why, took)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cancel(self) -> None:
        """Stop it (if still running) and clean up."""
        if self.proc is not None:
            reap(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


LITTLE_ENDIAN_ARCHES = ("x86_64", "aarch64", "riscv64", "ppc64le", "loongarch64")


# --- the remote's end ------------------------------------------------------------

WRAPPER = """#!/bin/sh
# ktrace-harness: run {compiled} with bpftrace-aotrt when the harness sent it, else bpftrace.
# bpftrace-aotrt dies on SIGINT without printing its maps: it starts with SIGINT ignored, and
# the harness's SIGINT here becomes kill({pid}, 0), which the program's last probe turns into
# exit() (maps printed, END run).
if [ ! -f {compiled} ]; then exec {bpftrace} "$@"; fi
trap '' INT
{runtime} {compiled} &
child=$!
trap 'kill -0 {pid} 2>/dev/null' INT
trap 'kill -TERM $child 2>/dev/null' TERM HUP
status=0
while kill -0 $child 2>/dev/null; do
  wait $child
  status=$?
done
exit $status
"""


def write_wrapper(path: str, compiled: str, marker: str, bpftrace: str = "bpftrace") -> str:
    """The remote's bpftrace command for one run that may arrive compiled (at `compiled`)."""
    with open(path, "w") as fh:
        fh.write(WRAPPER.format(compiled=shlex.quote(compiled), pid=stop_pid(marker),
                                bpftrace=shlex.quote(bpftrace), runtime=AOT_RUNTIME))
    os.chmod(path, 0o755)
    return path


# --- the harness's end ------------------------------------------------------------

TRACEPOINT_RE = re.compile(r"\btracepoint:([A-Za-z0-9_]+):([A-Za-z0-9_]+)")


def record_layout(format_text: str) -> list[str]:
    """A tracepoint format file's record layout: its field lines (the ID and the print format
    differ between kernels without moving a field)."""
    lines = (" ".join(ln.split()) for ln in format_text.splitlines())
    return [ln for ln in lines if ln.startswith("field:")]


def format_files(program: str, marker: str) -> list[str]:
    """The tracefs format files (relative) of the tracepoints a compiled program reads."""
    found = TRACEPOINT_RE.findall(with_stop_probe(program, marker))
    return [f"events/{cat}/{name}/format" for cat, name in sorted(set(found))]

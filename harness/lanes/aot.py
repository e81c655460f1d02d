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

Both ends use this module: the agent (standard library only) writes the wrapper.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.host.capabilities import tracefs_root
from harness.host.lifetime import reap, spawn

if TYPE_CHECKING:  # the remote's python (any 3.x with the agent) never evaluates this
    from collections.abc import Callable

    # A spec's program for a workload pid with its cast member reads at the remote's offsets,
    # and what moved where; or (None, why not) (harness.spec.plan.Programs.portable).
    Portable = Callable[[int | None], tuple[str | None, str]]

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


def _layout(format_text: str) -> list[str]:
    """A tracepoint format file's record layout: its field lines (the ID and the print format
    differ between kernels without moving a field)."""
    lines = (" ".join(ln.split()) for ln in format_text.splitlines())
    return [ln for ln in lines if ln.startswith("field:")]


def format_files(program: str, marker: str) -> list[str]:
    """The tracefs format files (relative) of the tracepoints a compiled program reads."""
    found = TRACEPOINT_RE.findall(with_stop_probe(program, marker))
    return [f"events/{cat}/{name}/format" for cat, name in sorted(set(found))]


class AotRun:
    """One remote run's compilation: `answer(text)` is what goes to the agent for a program
    (compiled when bpftrace --aot takes it), `notes` what the run's warnings say of it.

    `formats_there` holds the remote's tracefs format files (None when missing), read before
    the run: a tracepoint's record layout is compiled into the program, so a program whose
    tracepoints' formats differ here and there runs with the remote's bpftrace instead.

    `source` gives the program's text for any pid without recording it as the run's (the
    shapes of harness.lanes.aot_reuse): a program compiled for an earlier run is filled in
    when proven the same, else the program is compiled, and a template of it made in the
    background, which `settle()` collects after the run (`cancel()` on a failed run)."""

    def __init__(self, marker: str, local_bpftrace: str, host: str,
                 formats_there: dict[str, str | None],
                 portable: Portable | None = None,
                 source: Callable[[int | None], str] | None = None,
                 version: str = "") -> None:
        self.marker = marker
        self.local = local_bpftrace
        self.host = host
        self.formats_there = formats_there
        self.portable = portable  # the program without casts (None: casts are refused)
        self.source = source
        self.version = version  # the local bpftrace's version line
        self.compiled: Compiled | None = None
        self.rewritten: str | None = None  # the program as compiled, when its casts were moved
        self.notes: list[str] = []
        self.reuse = ""  # "filled", "made", or why neither (harness.lanes.aot_reuse)
        self._making: Any = None  # aot_reuse.Making, until settled
        self._shapes: dict[str, tuple[str, str]] = {}  # form -> (its shape, its template name)

    def _local_formats(self, text: str) -> dict[str, str | None]:
        root = tracefs_root()
        here: dict[str, str | None] = {}
        for rel in format_files(text, self.marker):
            try:
                with open(os.path.join(root, rel)) as fh:
                    here[rel] = fh.read()
            except OSError:
                here[rel] = None
        return here

    def _formats_differ(self, text: str) -> str:
        for rel, here in self._local_formats(text).items():
            there = self.formats_there.get(rel)
            if here is None or there is None or _layout(here) != _layout(there):
                name = ":".join(rel.split("/")[1:3])
                return f"tracepoint:{name}'s record differs here and on {self.host}"
        return ""

    def answer(self, text: str, pid: int | None = None) -> dict[str, Any]:
        """What goes to the agent for `text`, the program for workload `pid`."""
        why = self._formats_differ(text)
        moved = ""
        reused = None if why else self._reused(text, pid)
        if why:
            self.compiled = Compiled(None, why)
        elif reused is not None:
            moved = reused
        else:
            moved = self._compile(text, pid)
        assert self.compiled is not None
        if self.compiled.data is None:
            self.notes.append(
                f"not compiled ahead of time ({self.compiled.refused}): it ran with bpftrace on "
                f"{self.host}, which compiles it there (LLVM: seconds under TCG)")
            return {"text": text}
        self._make_template(pid)
        if self.rewritten is not None:
            self.notes.append(
                f"bpftrace --aot refuses struct casts: the program was compiled with each cast "
                f"member read at its offset in {self.host}'s kernel (its BTF): {moved}; the "
                "maps are the same, the program run is in run.json (lane.aot.program)")
        how = " (this run's pid and marker filled into the same program compiled for an " \
            "earlier run)" if self.reuse == "filled" else ""
        self.notes.append(
            f"compiled ahead of time here in {self.compiled.seconds:.2f}s{how} and run with "
            f"{AOT_RUNTIME} on {self.host}; {AOT_RUNTIME} dies on SIGINT without printing its "
            "maps, so the program had one probe more (tracepoint:syscalls:sys_enter_kill, "
            "which ends it on the harness's stop; the attach count includes it)")
        return {"text": text, "aot": base64.b64encode(self.compiled.data).decode()}

    def _compile(self, text: str, pid: int | None) -> str:
        """bpftrace --aot of the program, else of its portable form; what moved where."""
        self.compiled = compile_program(text, self.marker, self.local)
        moved = ""
        if self.compiled.data is None and "struct casts" in self.compiled.refused and \
                self.portable is not None:
            portable, moved = self.portable(pid)
            if portable is None:
                self.compiled.refused += f"; its reads cannot be written without them: {moved}"
            else:
                again = compile_program(portable, self.marker, self.local)
                again.seconds += self.compiled.seconds
                if again.data is None:
                    self.compiled.refused += f"; nor without them: {again.refused}"
                else:
                    self.compiled, self.rewritten = again, portable
        return moved

    # -- programs compiled for an earlier run (harness.lanes.aot_reuse) --
    def _forms(self) -> list[tuple[str, Callable[[int], str | None]]]:
        """The texts a run may compile, by form: the program, and its portable rewrite."""
        forms: list[tuple[str, Callable[[int], str | None]]] = []
        if self.source is not None:
            forms.append(("program", self.source))
        portable = self.portable
        if portable is not None:
            forms.append(("portable", lambda pid: portable(pid)[0]))
        return forms

    def _reused(self, text: str, pid: int | None) -> str | None:
        """The program filled in from a template when one is proven for this run (what moved
        where, for a portable one), else None (self.reuse says why)."""
        from harness.lanes import aot_reuse

        if not aot_reuse.enabled():
            return None
        t0 = time.monotonic()
        values = aot_reuse.Values(pid, self.marker)
        self.reuse = "no template"
        for form, text_for in self._forms():
            shape = aot_reuse.shape(text_for, self.marker)
            if shape is None:
                continue
            facts = aot_reuse.machine_facts(
                self.local, self.version,
                [f or "" for f in self._local_formats(shape.replace(aot_reuse.MARKER_HOLE,
                                                                    self.marker)).values()])
            name = aot_reuse.key(shape, self.marker, form, facts)
            self._shapes[form] = (shape, name)
            template = aot_reuse.load(name)
            if template is None:
                continue
            moved = ""
            ran: str | None = text
            if form == "portable":
                assert self.portable is not None
                ran, moved = self.portable(pid)
            data = template.fill(values)
            if ran is None or ran != aot_reuse.fill_text(shape, values) or data is None:
                self.reuse = f"the {form}'s template does not fit this run"
                continue
            self.compiled = Compiled(data, "", time.monotonic() - t0)
            self.rewritten = ran if form == "portable" else None
            self.reuse = "filled"
            return moved
        return None

    def _make_template(self, pid: int | None) -> None:
        """After a compile of this run's own: the sentinel compiles, in the background."""
        from harness.lanes import aot_reuse

        form = "portable" if self.rewritten is not None else "program"
        if self.reuse == "filled" or form not in self._shapes:
            return
        shape, name = self._shapes[form]
        self._making = aot_reuse.Making(name, shape, aot_reuse.Values(pid, self.marker),
                                        self.local)

    def settle(self) -> None:
        """After the run: a template made in the background is checked and kept."""
        making, self._making = self._making, None
        if making is not None and self.compiled is not None and self.compiled.data:
            self.reuse = making.finish(self.compiled.data)

    def cancel(self) -> None:
        making, self._making = self._making, None
        if making is not None:
            making.cancel()

    def describe(self) -> dict[str, Any]:
        c = self.compiled
        return {"used": bool(c and c.data), "refused": c.refused if c else "",
                "compile_s": round(c.seconds, 3) if c else None, "bytes": len(c.data or b"")
                if c else None, "program": self.rewritten, "reuse": self.reuse}

"""The harness's end of a remote run whose program is compiled here (harness.lanes.aot): what
goes to the agent for the program, compiled by bpftrace --aot, or filled in from the program
compiled for an earlier run (harness.lanes.aot_reuse), or why it runs with the remote's
bpftrace; and the run's notes about it."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import Any

from harness.host.capabilities import tracefs_root
from harness.lanes import aot_reuse
from harness.lanes.aot import (
    AOT_RUNTIME,
    Compiled,
    compile_program,
    format_files,
    record_layout,
)

# A spec's program for a workload pid with its cast member reads at the remote's offsets, and
# what moved where; or (None, why not) (harness.spec.plan.Programs.portable).
Portable = Callable[[int | None], tuple[str | None, str]]


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
            if here is None or there is None or record_layout(here) != record_layout(there):
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
        self._make_template(pid, self.rewritten or text)
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

    def _make_template(self, pid: int | None, compiled: str) -> None:
        """After a compile of this run's own (`compiled`, the text): the sentinel compiles, in
        the background; none when that text is not its shape filled with this run's values
        (a run without the pid its spec filters on, a text handed in changed): such a
        template could not be proven against this run's compile."""
        form = "portable" if self.rewritten is not None else "program"
        if self.reuse == "filled" or form not in self._shapes:
            return
        shape, name = self._shapes[form]
        values = aot_reuse.Values(pid, self.marker)
        if aot_reuse.fill_text(shape, values) != compiled:
            return
        self._making = aot_reuse.Making(name, shape, values, self.local)

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

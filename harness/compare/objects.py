"""CO-RE's promise, checked over rows of runs: one `.bpf.o` per attach type.

The twin is generated per attach type (a host without kprobes runs the tracepoint equivalent),
so a matrix over kernels and a crosscheck over a fleet of hosts both pass only when every row of
one attach type ran the very same object, whichever kernel or host it ran on.
"""

from __future__ import annotations

from typing import Any


class OneObjectPerAttach:
    """A mixin for results whose `rows` carry `attach` and `bpf_obj_sha256`."""

    rows: list[dict[str, Any]]

    def objects(self) -> dict[str, set[str]]:
        """The .bpf.o sha256s each attach type ran."""
        shas: dict[str, set[str]] = {}
        for r in self.rows:
            if r["bpf_obj_sha256"]:
                shas.setdefault(r["attach"], set()).add(r["bpf_obj_sha256"])
        return shas

    @property
    def one_object_per_attach(self) -> bool:
        """Every row of one attach type ran the very same .bpf.o."""
        return all(len(shas) == 1 for shas in self.objects().values())

"""What a twin's loader says when it fails, and what libbpf's log says it did (CO-RE offsets).

The loader process itself and the decoding of its map dump live in harness.twin.generic; the
line format is mapdump.h's, printed by every loader (twinload.c, and the hand-written ktrace.c
in tests/twin_example).
"""

from __future__ import annotations

import re

from harness.errors import HarnessError
from harness.twin.build import ARCH_GOTCHA, explain_build_failure


class LoaderError(HarnessError):
    """The libbpf loader failed to load, attach or report."""


_FAILING = re.compile(r"fail|error|invalid|denied|cannot|can't|unable", re.I)


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
    lines = stderr.splitlines()
    own = [ln for ln in lines if ln.startswith("error:")]
    # libbpf's verbose log ends wherever loading got to, and its first failing line names
    # the cause ("failed to load object" follows it)
    failing = [ln for ln in lines if _FAILING.search(ln)]
    said = own[-1] if own else failing[0] if failing else lines[-1] if lines else "no output"
    return LoaderError(f"libbpf loader failed: {said}", "see its stderr")


_RELO = re.compile(
    r"relo #\d+: matching candidate #\d+ <(\w+)> \[\d+\] (?:struct|union) ([\w.]+) "
    r"\([\d:]+ @ offset (\d+)\)"
)


def core_relocations(log: str) -> dict[str, int]:
    """Field offsets libbpf's CO-RE relocation chose on this kernel, from its debug log.

    e.g. {'sk_buff.len': 112, 'sk_buff.hash': 148}: what makes one .bpf.o run on many kernels.
    """
    return {m.group(2): int(m.group(3)) for m in _RELO.finditer(log) if m.group(1) == "byte_off"}

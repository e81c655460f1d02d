"""Shared test gates: real-kernel tests skip (reason printed) only where they cannot run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def bpf_unavailable_reason() -> str | None:
    """Why real bpftrace runs cannot happen on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "not root: BPF needs CAP_BPF/CAP_SYS_ADMIN"
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (run scripts/setup.sh)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    return None


@pytest.fixture
def needs_bpf() -> None:
    """Skip a test that needs root, bpftrace and BTF on the running kernel."""
    reason = bpf_unavailable_reason()
    if reason:
        pytest.skip(reason)

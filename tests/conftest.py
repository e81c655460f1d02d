"""Shared test gates: real-kernel tests skip (reason printed) only where they cannot run.

A test says what it needs: the `kernel` marker (BPF on the running kernel) or the `needs_bpf`
fixture, which the hook below turns into each other, so `-m "not kernel"` selects exactly the
tests that run anywhere, and a marked test without the fixture still skips where BPF cannot run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_errors import results_in_tmp, run_cli  # noqa: F401  (fixtures for every test)

if TYPE_CHECKING:
    from harness import Crosscheck

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


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of the test's own (KTRACE_CACHE): builds, guests' state, nothing shared."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KTRACE_CACHE", str(cache))
    return cache


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """needs_bpf -> the `kernel` marker; the `kernel` marker -> skipped without BPF."""
    reason = bpf_unavailable_reason()
    for item in items:
        uses_fixture = "needs_bpf" in getattr(item, "fixturenames", ())
        if uses_fixture and item.get_closest_marker("kernel") is None:
            item.add_marker(pytest.mark.kernel)
        if reason and item.get_closest_marker("kernel") is not None and not uses_fixture:
            item.add_marker(pytest.mark.skip(reason=reason))


def assert_reparses_to(run_dir: Path, x: Crosscheck) -> None:
    """`harness parse RUN/bpftrace/stdout.txt` gives the crosscheck's own bpftrace frames."""
    import pandas as pd

    from harness import parse_text, to_frames
    from harness.api.planner import resolve_spec

    spec, *_ = resolve_spec(x.meta.catalog, None, x.attach)
    stdout = (run_dir / "bpftrace" / "stdout.txt").read_text()
    again = to_frames(parse_text(stdout), spec.key_names())
    assert x.bpftrace and set(again) == set(x.bpftrace)
    for name, frame in x.bpftrace.items():
        pd.testing.assert_frame_equal(again[name], frame, obj=name)
    assert (run_dir / "bpftrace" / "stderr.txt").is_file()

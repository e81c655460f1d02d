"""Twin builds are safe to run side by side and leave nothing half-built behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.twin.build import BuildError, build, cache_root

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_three_concurrent_first_crosschecks_all_pass(tmp_path: Path) -> None:
    """Three `harness crosscheck` with one empty cache: each builds or waits, all pass."""
    env = {**os.environ, "KTRACE_CACHE": str(tmp_path / "cache"), "KTRACE_NO_REPORT": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "crosscheck", "ktrace", "--count", "20",
             "--out", str(tmp_path / f"x{i}")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(3)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out, err)
        assert "PASS" in out
    assert not list((tmp_path / "cache").rglob("*.tmp")), "a build left its work directory"


def test_a_failed_build_leaves_no_work_directory(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KTRACE_CACHE", str(tmp_path))
    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("no kernel BTF to build against")
    with pytest.raises(BuildError):
        build(REPO / "tests" / "twin_example",
              extra_cflags=("-include", str(tmp_path / "missing.h")))
    assert not list(cache_root().rglob("*.tmp"))

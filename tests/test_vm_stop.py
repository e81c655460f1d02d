"""VM lane: a run interrupted while its workload runs in the guest keeps what the guest gathered,
and a VM run leaves nothing behind on the host (no lane directory in vm-scratch, no
`/tmp/virtme_ret*` file of virtme-run's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from processes import reaped
from test_vm import vm_unavailable_reason

from harness.lanes.vm import _rw_parent

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parent.parent


def _virtme_files() -> set[str]:
    return {p.name for p in Path("/tmp").glob("virtme_ret*")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_an_interrupted_guest_run_keeps_what_the_guest_gathered(
    sig: signal.Signals, tmp_path: Path,
) -> None:
    reason = vm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    token = uuid.uuid4().hex[:12]
    scratch = _rw_parent()
    # The workload says it was released (the probes are live in the guest) in the one
    # directory the guest may write: its lane's, whichever that is.
    # (touch, not `: >`: a failed redirection of a special builtin ends a POSIX shell, and the
    # other lanes' directories are read-only in the guest.)
    work = (f"for d in {scratch}/lane-6.1-*; do touch \"$d/started-{token}\" 2>/dev/null; "
            "done; while :; do sleep 0.2; done")
    virtme_before = _virtme_files()
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run",
         "tracepoint:syscalls:sys_enter_clock_nanosleep", "--count-by", "comm",
         "-c", f"sh -c '{work}'", "--lane", "vm:6.1", "-q", "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KTRACE_NO_REPORT": "1"},
    )
    with reaped(proc):
        deadline = time.monotonic() + 900
        while not list(scratch.glob(f"lane-6.1-{proc.pid}-*/started-{token}")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the guest never released the workload"
            time.sleep(0.2)
        time.sleep(15)  # some sleeps counted (each exec is slow under TCG)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "partial results were kept" in stderr, stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["lane"]["name"] == "vm:6.1"
    assert meta["ended_by"] == ("ctrl-c" if sig == signal.SIGINT else "signal")
    # bpftrace's exit printing, from the guest: the workload's sleeps are in it and the CSV.
    printed = (out / "stdout.txt").read_text()
    sleeps = [ln for ln in printed.splitlines() if ln.startswith("@count[sleep]: ")]
    assert sleeps and int(sleeps[0].split(": ")[1]) >= 1, printed
    assert "sleep" in (out / "count.csv").read_text()
    # Nothing of that boot is left on the host.
    assert not list(scratch.glob(f"lane-*-{proc.pid}-*")), sorted(scratch.iterdir())
    assert not _virtme_files() - virtme_before

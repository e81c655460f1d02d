"""The machine side of a crosscheck: bpftrace and the twin loader on one gated workload.

Everything here runs on the kernel under test (the host, or a guest of the VM lane), so it
stays small: start the workload behind its gate, let the caller name the program once the pid is
known, attach both tracers, release, stop both, and hand back their raw results. Parsing,
frames and the comparison happen where the caller is (compare/crosscheck.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import CrosscheckError, HarnessError
from harness.host.lifetime import shielded
from harness.host.runner import BpftraceProcess, Interrupted, raise_if_asked
from harness.host.workload import GatedWorkload

if TYPE_CHECKING:
    from harness.host.runner import Capture
    from harness.twin.generic import MapDump


@dataclass
class GatherRequest:
    """bpftrace and the twin's loader around one gated workload: the machine side of a
    crosscheck, as the harness asks for it (harness.lanes.protocol carries it to a guest or a
    remote host); the program comes apart, from the workload's pid."""

    marker: str
    workload: list[str]
    loader: str  # the twin's loader and object, built by the harness
    obj: str
    setting_names: list[str]
    func: str | None
    pid_offset: int = 0
    cgroup: str | None = None
    timeout: float = 60.0
    bpftrace: str = "bpftrace"  # the command that starts it


@dataclass
class Gathered:
    """What both tracers saw: bpftrace's run (raw on the machine side; a lane hands it back
    parsed, a runner.RunResult), the twin's map dumps and libbpf's log."""

    bpftrace: Capture
    dumps: dict[str, MapDump]
    log: str
    workload_pid: int
    libbpf_attach_s: float | None
    # The stop signal (Ctrl-C, SIGTERM) that cut the run short, if one did: the tracers were
    # stopped the normal way and what they gathered until then is here.
    interrupted: int | None = None


def gather(
    program_for: Callable[[int], str],
    req: GatherRequest,
    stop_check: Callable[[], int | None] | None = None,
    on_spawn: Callable[[], None] | None = None,
) -> Gathered:
    """Run both tracers around one gated workload; the program text comes from `program_for`
    (the workload's pid filters both). `stop_check` stops it from another thread as Ctrl-C
    does in its own (harness.host.runner.capture_bpftrace); `on_spawn` is called once bpftrace
    runs."""
    from harness.twin.generic import TwinLoader

    asked = stop_check or (lambda: None)
    if asked() is not None:
        raise Interrupted(int(asked() or signal.SIGINT), kept=False)  # nothing started
    work = GatedWorkload(req.workload)
    lb: TwinLoader | None = None
    bt: BpftraceProcess | None = None
    interrupted: int | None = None
    dumps: dict[str, MapDump] = {}
    log = ""
    try:
        program = program_for(work.pid)
        settings = {"target_pid": work.pid + req.pid_offset}
        if req.cgroup:
            settings["target_cgroup"] = os.stat(req.cgroup).st_ino
        bt = BpftraceProcess(program, req.marker, bpftrace=req.bpftrace, on_spawn=on_spawn)
        bt.start()
        lb = TwinLoader(
            Path(req.loader),
            Path(req.obj),
            {k: v for k, v in settings.items() if k in req.setting_names},
            func=req.func,
            verbose=True,
        )
        lb.wait_attached(req.timeout)
        bt.wait_attached(req.timeout, asked)
        work.go()
        deadline = time.monotonic() + req.timeout
        while work.poll() is None and time.monotonic() < deadline:
            raise_if_asked(asked)
            time.sleep(0.05)
        raise_if_asked(asked)
        status = work.wait(max(deadline - time.monotonic(), 0.0), bound=req.timeout)
        if status != 0:
            raise CrosscheckError(f"workload exited with status {status}", "run it by hand")
        bt_result = bt.stop()
        dumps, log = lb.stop()
    except KeyboardInterrupt as stop:
        if bt is None or bt.child is None:
            raise
        # Ctrl-C or SIGTERM: stop both tracers the normal way and keep what they gathered.
        interrupted = getattr(stop, "signum", int(signal.SIGINT))
        with shielded():
            work.close()
            bt_result = bt.stop()
            if lb is not None:
                with contextlib.suppress(HarnessError, OSError, ValueError):
                    dumps, log = lb.stop()
            bt_result.error = Interrupted(interrupted, kept=bt_result.attached is not None)
    finally:
        with shielded():
            work.close()
            if bt is not None and bt.child is not None and bt.child.isalive():
                bt.stop()
            if lb is not None:
                lb.stop_quietly()
    return Gathered(bt_result, dumps, log, work.pid, lb.attach_s if lb else None, interrupted)

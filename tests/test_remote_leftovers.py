"""Nothing left behind on the remote by a crosscheck: the twin loader (built here, copied over)
runs there beside bpftrace and the workload, and each way the harness can end (Ctrl-C, SIGTERM,
SIGKILL, its ssh client killed: a dropped connection) must take all three down. Checked on
ktrace-localhost as a user would: the session's processes (their environment names it), `ps`
for the loader and the workload, `bpftool` for the programs both tracers held."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_ssh import local_ssh, remote_cleared, remote_scan  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
HOST = "ktrace-localhost"
KILLS = ("SIGINT", "SIGTERM", "SIGKILL", "ssh-killed")


def _ps_and_bpftool(token: str, loaders: set[str], progs: set[int]
                    ) -> tuple[list[str], set[int]]:
    """On the remote, by `ps` and `bpftool`: lines of this run's loader (its binary's path is
    in the session's own scratch directory; another session's loader may run there meanwhile)
    or the token's workload, and which of `progs` are still loaded."""
    done = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", HOST, "ps -eo pid=,args=; echo ==; bpftool prog show -j"],
        capture_output=True, text=True, timeout=60, check=True)
    ps, _, tool = done.stdout.partition("==\n")
    lines = [ln for ln in ps.splitlines()
             if f"sleep {token}" in ln or any(path in ln for path in loaders)]
    return lines, progs & {p["id"] for p in json.loads(tool or "[]")}


@pytest.mark.parametrize("how", KILLS)
def test_a_remote_crosscheck_leaves_nothing(local_ssh: None, tmp_path: Path,  # noqa: F811
                                             how: str) -> None:
    token = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "crosscheck", "tracepoint:syscalls:sys_enter_getppid",
         "--count-by", "comm", "-c", f"sleep {token}", "--lane", f"ssh:{HOST}", "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KTRACE_RESULTS": str(tmp_path)},
    )
    prefix = f"{socket.gethostname()}-{proc.pid}-"
    seen: dict[str, Any] = {}
    progs: set[int] = set()
    loaders: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the loader and bpftrace hold programs, the workload runs
        seen = remote_scan(HOST, prefix)
        procs = seen["procs"].values()
        progs |= {p for info in procs for p in info["progs"]}
        loader = [i for i in procs if "twinload" in i["argv"][0] and i["progs"]]
        loaders |= {i["argv"][0] for i in loader}
        tracer = [i for i in procs if i["argv"][0].endswith("bpftrace") and i["progs"]]
        sleeping = [i for i in procs if i["argv"][:2] == ["sleep", token]]
        if loader and tracer and sleeping:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    else:
        pytest.fail(f"the remote crosscheck never ran: {seen}")
    if how.startswith("SIG"):
        proc.send_signal(getattr(signal, how))
    else:
        ssh = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid), "-x", "ssh"],
                                              capture_output=True, text=True).stdout.split()]
        assert len(ssh) == 1
        os.kill(ssh[0], signal.SIGKILL)
    remote_cleared(HOST, prefix, progs, 30, f"after {how}")
    # The remote is this machine: the harness's own argv holds the token too, so it must have
    # exited before ps is read (after SIGINT it was once still writing its results there).
    _, err = proc.communicate(timeout=120)
    assert all("ktrace-agent-" in path for path in loaders), loaders
    lines, programs = _ps_and_bpftool(token, loaders, progs)
    assert lines == [] and programs == set(), (lines, programs)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    elif how == "ssh-killed":
        assert proc.returncode == 2 and b"lost the connection to ktrace-localhost" in err, err
    else:
        assert proc.returncode == 128 + getattr(signal, how), err
        assert b"Traceback" not in err

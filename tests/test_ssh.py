"""The SSH lane against this machine's own sshd (scripts/setup_ssh.sh keys it and names it
`ktrace-localhost` in the user's ssh config): the run happens in a remote session with only
the agent there, exactly as on another machine.

Counts are checked against the workload's own (it makes exactly N calls or sends), the crosscheck
against the libbpf twin, and "nothing left behind" by scanning the remote's /proc for processes
carrying the session's name (KTRACE_LANE_SESSION, which the agent exports to all it starts) and
the remote's bpftool for the programs they held."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_reparses_to

import harness
from harness.lanes.registry import get_lane
from harness.lanes.remote import RemoteError, SSHLane, parse_destination

REPO = Path(__file__).resolve().parent.parent
LOCAL = "ssh:ktrace-localhost"


def ssh_unavailable_reason(host: str = "ktrace-localhost") -> str | None:
    from conftest import bpf_unavailable_reason

    if shutil.which("ssh") is None:
        return "no ssh client (scripts/setup.sh installs openssh)"
    done = subprocess.run(["ssh", "-o", "BatchMode=yes", host, "true"], capture_output=True,
                          text=True, timeout=60, check=False)
    if done.returncode != 0:
        return (f"`ssh {host} true` fails ({done.stderr.strip()[-200:]}): scripts/setup_ssh.sh "
                "sets up the keyed localhost sshd")
    return bpf_unavailable_reason()


@pytest.fixture(scope="module")
def local_ssh() -> None:
    reason = ssh_unavailable_reason()
    if reason:
        pytest.skip(reason)


def _remote(host: str, code: str, *args: str) -> Any:
    """Run a Python snippet on `host` over plain ssh; its stdout as JSON."""
    import shlex

    command = f"python3 -I -S -c {shlex.quote(code)} " + " ".join(shlex.quote(a) for a in args)
    done = subprocess.run(["ssh", "-o", "BatchMode=yes", host, command], capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


# On the remote: the live processes whose environment names a session starting with PREFIX,
# each with its argv and the BPF programs it holds (from /proc/PID/fdinfo); and bpftool's ids.
SCAN = r"""
import json, os, re, subprocess, sys
prefix = ("KTRACE_LANE_SESSION=" + sys.argv[1]).encode()
found = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            continue
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        if not any(e.startswith(prefix) for e in env):
            continue
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
        progs = set()
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                text = open(f"/proc/{pid}/fdinfo/{fd}").read()
            except OSError:
                continue
            progs |= {int(m) for m in re.findall(r"^prog_id:\s+(\d+)$", text, re.M)}
    except OSError:
        continue
    found[pid] = {"argv": argv, "progs": sorted(progs)}
ids = json.loads(subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True,
                                text=True).stdout or "[]")
print(json.dumps({"procs": found, "progs": sorted(p["id"] for p in ids)}))
"""


def remote_scan(host: str, prefix: str) -> dict[str, Any]:
    return dict(_remote(host, SCAN, prefix))


def remote_cleared(host: str, prefix: str, progs: set[int], seconds: float, after: str) -> None:
    """Wait until `host` runs none of the session's processes (their environment names
    `prefix`) and holds none of `progs`; else fail naming what is left `after` a stop."""
    left: dict[str, Any] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = remote_scan(host, prefix)
        if not left["procs"] and not progs & set(left["progs"]):
            return
        time.sleep(0.2)
    pytest.fail(f"left on {host} {after}: {left['procs']}, programs "
                f"{progs & set(left['progs'])}")


# --- runs ----------------------------------------------------------------------------------------


def test_destinations_are_read_like_ssh_reads_them() -> None:
    assert parse_destination("lab") == (None, "lab", None)
    assert parse_destination("root@10.0.0.7:2222") == ("root", "10.0.0.7", 2222)
    assert parse_destination("me@[::1]:22") == ("me", "::1", 22)
    with pytest.raises(RemoteError, match="cannot read the ssh destination"):
        parse_destination("a b")
    lane = SSHLane("root@lab:2200")
    argv = lane.ssh_argv()
    assert argv[-1] == "lab" and argv[argv.index("-p"):argv.index("-p") + 2] == ["-p", "2200"]
    assert "BatchMode=yes" in argv  # never a password prompt


def test_a_run_over_ssh_counts_exactly_the_workloads_calls(local_ssh: None, tmp_path: Path
                                                           ) -> None:
    n = 3000
    t = harness.trace(
        "tracepoint:syscalls:sys_enter_getppid", count_by="comm", workload_pid=True,
        workload=["python3", "-m", "harness.workloads.syscall_loop", "--count", str(n)],
        lane=LOCAL, out=tmp_path / "run",
    )
    assert t.frames["@count"]["value"].sum() == n
    lane = t.meta.lane
    assert lane["transport"] == "ssh" and lane["host"] == "ktrace-localhost"
    assert lane["hostname"] == socket.gethostname() and lane["session"]
    assert t.meta.capabilities["kernel"] == os.uname().release  # the remote's own facts
    assert t.meta.bpftrace["origin"].startswith("ktrace-localhost:")
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["lane"]["transport"] == "ssh"
    assert (tmp_path / "run" / "stdout.txt").read_text().count("@count[") == 1


def test_the_catalog_workload_runs_remotely_with_its_own_code(local_ssh: None) -> None:
    """ktrace's workload is the package's udp_send.py: the agent runs its shipped copy with the
    remote's python, and every send is counted."""
    t = harness.trace("ktrace", lane=LOCAL, count=40, sizes="100", out=False)
    assert t.frames["@stacks"]["value"].sum() == 40
    assert t.frames["@hash"]["value"].sum() == 40


def test_crosscheck_over_ssh_is_exact_with_the_host_built_object(local_ssh: None,
                                                                  tmp_path: Path) -> None:
    x = harness.crosscheck("ktrace", lane=LOCAL, count=60, out=tmp_path / "x")
    assert x.passed, {name: v.diff for name, v in x.maps.items()}
    assert int(x.bpftrace["@stacks"]["value"].sum()) == 60
    assert int(x.libbpf["@stacks"]["value"].sum()) == 60
    assert x.meta.lane["transport"] == "ssh"
    assert_reparses_to(tmp_path / "x", x)


def test_one_connection_serves_many_runs(local_ssh: None) -> None:
    lane = get_lane(LOCAL)
    harness.trace("tracepoint:syscalls:sys_enter_getppid", count_by="comm", workload_pid=True,
                  workload=["python3", "-m", "harness.workloads.syscall_loop", "--count", "10"],
                  lane=lane, out=False)
    first = lane.describe()["session"]
    harness.trace("tracepoint:syscalls:sys_enter_getppid", count_by="comm", workload_pid=True,
                  workload=["python3", "-m", "harness.workloads.syscall_loop", "--count", "10"],
                  lane=lane, out=False)
    assert lane.describe()["session"] == first


# --- failures are one line -----------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO, check=False,
                          env={**os.environ, **(env or {})})


def test_a_host_that_is_down_is_one_line(local_ssh: None) -> None:
    done = _cli("run", "tracepoint:syscalls:sys_enter_getppid", "-d", "1", "--lane",
                "ssh:ktrace-down", "--out", "/nonexistent/never-written")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("harness run: error: cannot reach ktrace-down (")
    assert "Connection refused" in lines[0] and "ssh ktrace-down true" in lines[0]


@pytest.fixture(scope="module")
def nobpftrace_host(local_ssh: None) -> Iterator[str]:
    """An sshd on port 2222 in a mount namespace where bpftrace's binaries are hidden (bound
    over by /dev/null): a session there finds no bpftrace, like a host without the package."""
    script = ("for b in /usr/bin/bpftrace /usr/bin/bpftrace-aotrt; do "
              "mount --bind /dev/null $b || exit 1; done; "
              "exec /usr/sbin/sshd -D -e -p 2222 -o ListenAddress=127.0.0.1")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                             "sh", "-c", script], stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            if ssh_unavailable_reason("ktrace-nobpftrace") is None:
                break
            time.sleep(0.1)
        yield "ktrace-nobpftrace"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_host_without_bpftrace_is_one_line(nobpftrace_host: str) -> None:
    done = _cli("run", "tracepoint:syscalls:sys_enter_getppid", "-d", "1", "--lane",
                f"ssh:{nobpftrace_host}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"harness run: error: {nobpftrace_host} has no bpftrace on PATH; install it "
                     "there (Debian/Ubuntu: apt-get install bpftrace), or trace another host"]


# --- nothing left behind remotely ----------------------------------------------------------------

KILLS = ("SIGINT", "SIGTERM", "SIGKILL", "ssh-killed", "link-silent")


@pytest.mark.parametrize("how", KILLS)
def test_nothing_is_left_on_the_remote(local_ssh: None, tmp_path: Path, how: str) -> None:
    """A run is killed while its workload runs remotely: by a signal to the harness, by its ssh
    client dying (the connection closes), or by the ssh client freezing (a dropped link: no
    heartbeat). Afterwards the remote has no process of that session and none of the BPF
    programs they held; Ctrl-C and SIGTERM also keep the partial results."""
    token = f"{uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    env = {"KTRACE_LANE_BEAT_TIMEOUT": "4"} if how == "link-silent" else {}
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run",
         "tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }",
         "--workload", f"sleep {token}", "--lane", LOCAL, "--out", str(out), "-q"],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    prefix = f"{socket.gethostname()}-{proc.pid}-"
    seen: dict[str, Any] = {}
    progs: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the workload runs remotely, bpftrace holds its programs
        seen = remote_scan("ktrace-localhost", prefix)
        progs |= {p for info in seen["procs"].values() for p in info["progs"]}
        if any(f"sleep\0{token}" in "\0".join(i["argv"]) for i in seen["procs"].values()) and progs:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    else:
        pytest.fail(f"the remote run never started: {seen}")
    assert len(seen["procs"]) >= 3  # the agent, bpftrace, the workload (and its guard)
    if how.startswith("SIG"):
        proc.send_signal(getattr(signal, how))
    else:
        ssh = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid), "-x", "ssh"],
                                              capture_output=True, text=True).stdout.split()]
        assert len(ssh) == 1
        os.kill(ssh[0], signal.SIGKILL if how == "ssh-killed" else signal.SIGSTOP)
    remote_cleared("ktrace-localhost", prefix, progs, 20, f"after {how}")
    if how == "link-silent":
        os.kill(ssh[0], signal.SIGCONT)  # the link comes back to a session that has ended
    _, err = proc.communicate(timeout=60)
    if how in ("SIGINT", "SIGTERM"):
        assert proc.returncode == 128 + getattr(signal, how)
        meta = json.loads((out / "run.json").read_text())
        assert meta["ended_by"] == ("ctrl-c" if how == "SIGINT" else "signal")
        assert meta["lane"]["transport"] == "ssh"
    elif how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 2
        assert b"lost the connection to ktrace-localhost" in err, err


def test_a_bench_runs_its_rounds_on_the_remote(local_ssh: None, tmp_path: Path) -> None:
    """The rounds run remotely (workload, bpftrace, the static twin loader sent over); each
    tracer's output comes back and is counted here: both see every one of the loop's calls."""
    import csv

    done = _cli("bench", "syscalls", "--rounds", "1", "--max-rounds", "1", "--warmup", "0",
                "--events", "5000", "--lane", LOCAL, "--out", str(tmp_path), "--no-report", "-q")
    assert done.returncode == 0, done.stderr
    with (tmp_path / "syscalls-sshktrace-localhost.csv").open() as f:
        rows = {r["mode"]: r for r in csv.DictReader(f)}
    assert rows["bpftrace"]["events_counted"] == rows["libbpf"]["events_counted"] == "5000"
    # the run with both attached: each output comes back and is counted by its own tracer
    assert rows["both:bpftrace"]["events_counted"] == rows["both:libbpf"]["events_counted"] == (
        "5000")
    summary = (tmp_path / "syscalls-sshktrace-localhost.md").read_text()
    assert f"on {socket.gethostname()} ({LOCAL})" in summary

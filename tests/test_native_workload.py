"""The C twin of udp_send.py (harness/workloads/udp_send.c, built once into the cache by
harness.workloads.native) and workload gates forked from the process that runs them
(harness.host.workload.ForkedGate, what the lanes' agent uses): both exist for speed in a TCG
guest, and both must behave as what they replace.

The twin is held to the Python workload's own output (same options, same lines, same errors)
and to an independent count: bpftrace on this kernel counts its datagrams, which must equal the
count the workload reports itself. The forked gate is held to the spawned one's reports: the
command's pid, its exit status, what it left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.host import workload as gate
from harness.paths import WORKLOADS
from harness.workloads.native import build, native_argv

UDP_PY = WORKLOADS / "udp_send.py"


@pytest.fixture(scope="module")
def twin() -> Path:
    binary = build(WORKLOADS / "udp_send.c")
    assert binary is not None, "no C compiler (cc) on this machine"
    return binary


def _both(twin: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], ...]:
    return tuple(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                                stdin=subprocess.DEVNULL)
                 for argv in ([sys.executable, str(UDP_PY), *args], [str(twin), *args]))


@pytest.mark.parametrize("args", [
    ["--no-wait"],
    ["--no-wait", "--count", "7", "--sizes", "1,100", "--sockets", "3"],
    ["--no-wait", "--count=0", "--sizes=65507"],
    ["--count", "5", "--sizes", "1, 2,,3"],  # waits for a line: stdin is empty, it goes on
])
def test_the_twin_reports_what_udp_send_py_reports(twin: Path, args: list[str]) -> None:
    py, c = _both(twin, *args)
    assert py.returncode == c.returncode == 0, (py.stderr, c.stderr)
    # the pid first, then the same counts; only the timings differ
    py_lines, c_lines = py.stdout.splitlines(), c.stdout.splitlines()
    assert c_lines[0].isdigit() and len(c_lines) == len(py_lines) == 3
    assert c_lines[1] == py_lines[1] and c_lines[1].startswith("sent ")
    assert c_lines[2].split()[:2] == py_lines[2].split()[:2]
    assert [w for w in c_lines[2].split()[2::2]] == ["elapsed_ns", "cpu_ns"]


@pytest.mark.parametrize("args", [
    ["--no-wait", "--count", "-1"],
    ["--no-wait", "--sockets", "0"],
    ["--no-wait", "--sizes", "1,x"],
    ["--no-wait", "--sizes", "70000"],
    ["--no-wait", "--sizes", "-1"],
    ["--no-wait", "--sizes", ","],
])
def test_the_twin_refuses_bad_values_as_udp_send_py_does(twin: Path, args: list[str]) -> None:
    py, c = _both(twin, *args)
    assert py.returncode == c.returncode == 1, (py.stderr, c.stderr)
    assert c.stderr.strip() == py.stderr.strip().splitlines()[-1]
    assert c.stdout == ""


def test_the_twin_refuses_an_unknown_option_in_one_line(twin: Path) -> None:
    _, c = _both(twin, "--bogus", "1")
    assert c.returncode == 2 and c.stderr.count("\n") == 1 and "--bogus" in c.stderr


def test_only_udp_send_py_is_swapped_for_its_twin(twin: Path) -> None:
    argv = [sys.executable, str(UDP_PY), "--no-wait", "--count", "9"]
    assert native_argv(argv) == ([str(twin), "--no-wait", "--count", "9"], "")
    other = [sys.executable, str(WORKLOADS / "syscall_loop.py"), "--count", "9"]
    assert native_argv(other) == (other, "")
    assert native_argv(None) == (None, "")
    assert native_argv(["true"]) == (["true"], "")


def test_without_a_compiler_the_python_workload_runs_with_a_warning(
        tmp_path: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [sys.executable, str(UDP_PY), "--count", "9"]
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    ran, note = native_argv(argv)
    assert ran == argv and "no C compiler here" in note and "udp_send.py" in note
    broken = tmp_path / "cc"  # a compiler that refuses everything
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: no input' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    ran, note = native_argv(argv)
    assert ran == argv and "could not build udp_send.c: cc: fatal error" in note
    left = [p.name for p in own_cache.rglob("udp_send-*") if p.suffix != ".lock"]
    assert left == [], "no half-built binary is kept"


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_the_twins_sends_are_counted_exactly_by_bpftrace(twin: Path, tmp_path: Path) -> None:
    """ktrace on this kernel around the twin: every datagram it says it sent is counted."""
    n, sockets = 37, 3
    t = harness.trace("ktrace", workload=[str(twin), "--no-wait", "--count", str(n), "--sizes",
                                          "1,100,1000", "--sockets", str(sockets)],
                      out=tmp_path / "run", report=False)
    said = (tmp_path / "run" / "workload.stdout.txt").read_text()
    assert f"sent {n} received {n}" in said
    assert int(t.frames["@stacks"]["value"].sum()) == n
    assert int(t.frames["@hash"]["value"].sum()) == n


# --- the gate forked from this process ------------------------------------------------

@pytest.fixture(params=["pid-namespace", "subreaper"])
def forked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(gate, "FORK_GATE", True)
    if request.param == "subreaper":
        monkeypatch.setattr(gate, "pid_namespaces", lambda: False)
    elif not gate.pid_namespaces():
        pytest.skip("no pid namespaces here (unshare)")
    return str(request.param)


def test_a_forked_gate_reports_as_the_spawned_one(forked: str, twin: Path) -> None:
    work = gate.GatedWorkload([str(twin), "--count", "11"])
    assert isinstance(work.proc, gate.ForkedGate) and work.isolation == forked
    assert os.getsid(work.pid) == work.proc.pid  # a session of its own, as spawn() gives
    assert work.poll() is None  # held at the gate until go
    work.go()
    assert work.wait(30) == 0
    lines = work.stdout.splitlines()
    assert lines[1] == "sent 11 received 11" and work.left == []
    if forked == "subreaper":  # the command's own pid is the one reported
        assert lines[0] == str(work.pid)


def test_a_forked_gate_ends_what_the_command_left(forked: str) -> None:
    # the pause lets the background child exec sleep before its parent exits (else it may
    # still be named sh when the gate looks)
    work = gate.GatedWorkload(["sh", "-c", "sleep 60 & sleep 0.5; exit 3"])
    work.go()
    assert work.wait(30) == 3
    assert work.left == ["sleep"]


def test_a_forked_gate_names_a_command_that_cannot_run(forked: str, tmp_path: Path) -> None:
    work = gate.GatedWorkload([str(tmp_path / "missing")])
    work.go()
    assert work.wait(30) == 127
    assert "cannot run" in work.stderr and "missing" in work.stderr


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_a_run_with_forked_gates_counts_exactly(monkeypatch: pytest.MonkeyPatch,
                                               twin: Path) -> None:
    """The runner, as the agent runs it: the workload's getppid calls, counted by bpftrace,
    equal what the workload says it made."""
    monkeypatch.setattr(gate, "FORK_GATE", True)
    t = harness.trace("syscalls", count=250, out=False, report=False)
    assert int(t.frames["@calls"]["value"].sum()) == 250

"""Whatever ends the harness, nothing it started outlives it: no child process, no BPF program,
no BPF link. `harness run` and `harness crosscheck` are killed with SIGINT, SIGTERM and SIGKILL
at three moments found by watching the real processes (bpftrace has just appeared: before
attach; the workload is running; the workload is gone: shutdown)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.usefixtures("needs_bpf"), pytest.mark.kernel]

REPO = Path(__file__).resolve().parent.parent
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
MOMENTS = ("before-attach", "workload", "shutdown")


def _procs() -> dict[int, tuple[bytes, list[bytes]]]:
    """pid -> (environ, argv) of every live (non-zombie) process we may read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found[int(entry)] = (environ, argv)
    return found


class Watch:
    """The processes that carry this test's token in their environment (the harness and every
    process it started), and the BPF programs and links they were seen holding."""

    def __init__(self, harness_pid: int, token: str) -> None:
        self.harness_pid = harness_pid
        self.token = f"KTRACE_KILL_TEST={token}".encode()
        self.progs: set[int] = set()
        self.links: set[int] = set()

    def tagged(self) -> dict[int, list[bytes]]:
        procs = {
            pid: argv for pid, (env, argv) in _procs().items() if self.token in env.split(b"\0")
        }
        for pid in procs:
            self._note_bpf(pid)
        return procs

    def children(self) -> dict[int, list[bytes]]:
        return {pid: argv for pid, argv in self.tagged().items() if pid != self.harness_pid}

    def _note_bpf(self, pid: int) -> None:
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            return
        for fd in fds:
            try:
                text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            except OSError:
                continue
            self.progs |= {int(m) for m in re.findall(r"^prog_id:\s+(\d+)$", text, re.M)}
            self.links |= {int(m) for m in re.findall(r"^link_id:\s+(\d+)$", text, re.M)}

    def wait_for(self, what: str, found: Callable[[dict[int, list[bytes]]], bool],
                 proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found(self.children()):
                return
            if proc.poll() is not None:
                pytest.fail(f"the harness exited (rc {proc.returncode}) before {what}")
            time.sleep(0.005)
        pytest.fail(f"no {what} within {timeout} s")


def _bpf_ids(kind: str) -> set[int]:
    done = subprocess.run(["bpftool", kind, "show", "-j"], capture_output=True, text=True,
                          check=True)
    return {item["id"] for item in json.loads(done.stdout or "[]")}


def _is(argv: list[bytes], name: str) -> bool:
    return bool(argv) and Path(argv[0].decode(errors="replace")).name == name


def _workload_running(argv: list[bytes], script: str) -> bool:
    """The released workload: the gate shim exec'd `python SCRIPT ...` (no `-c SHIM` left)."""
    return len(argv) > 1 and argv[1].decode(errors="replace").endswith(script)


def _command(kind: str, moment: str, out: Path) -> list[str]:
    harness = [sys.executable, "-m", "harness.cli"]
    if kind == "run":
        # The workload forks (sh runs sleep as its child): the group guard must reach it.
        work = "sh -c 'sleep 0.3; true'" if moment == "shutdown" else "sh -c 'sleep 60; true'"
        return [*harness, "run", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm",
                "--workload", work, "--out", str(out)]
    count = "200" if moment == "shutdown" else "5000000"
    return [*harness, "crosscheck", "ktrace", "--count", count, "--out", str(out)]


def _reach(kind: str, moment: str, watch: Watch, proc: subprocess.Popen[bytes]) -> None:
    """Block until the harness is at `moment`, judged from its live processes."""
    watch.wait_for("bpftrace", lambda ps: any(_is(a, "bpftrace") for a in ps.values()), proc)
    if moment == "before-attach":
        return
    if kind == "run":
        watch.wait_for("the workload's sleep", lambda ps: any(_is(a, "sleep") for a in ps.values()),
                       proc)
        if moment == "shutdown":
            watch.wait_for("the workload's end",
                           lambda ps: not any(_is(a, "sleep") or _is(a, "sh") for a in ps.values()),
                           proc)
        return
    if moment == "workload":
        watch.wait_for("the released udp_send.py",
                       lambda ps: any(_workload_running(a, "udp_send.py") for a in ps.values()),
                       proc)
        time.sleep(0.3)  # sending: the twin's ring buffer and bpftrace's maps are filling
        return
    watch.wait_for("the workload's end",
                   lambda ps: not any(b"udp_send.py" in b" ".join(a) for a in ps.values()), proc)


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("kind", ["run", "crosscheck"])
def test_killed_harness_leaves_nothing_behind(
    kind: str, sig: signal.Signals, moment: str, tmp_path: Path
) -> None:
    links_before = _bpf_ids("link")
    token = uuid.uuid4().hex
    out = tmp_path / "out"
    with (tmp_path / "stdout").open("wb") as so, (tmp_path / "stderr").open("wb") as se:
        proc = subprocess.Popen(
            _command(kind, moment, out), cwd=REPO, stdout=so, stderr=se,
            env={**os.environ, "KTRACE_KILL_TEST": token, "KTRACE_NO_REPORT": "1"},
        )
    watch = Watch(proc.pid, token)
    try:
        _reach(kind, moment, watch, proc)
        seen = watch.children()
        proc.send_signal(sig)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Within 2 s of the harness's exit: no child, and none of the programs or links they held.
    deadline = time.monotonic() + 2
    while True:
        left = watch.children()
        progs_left = watch.progs & _bpf_ids("prog")
        links_left = watch.links & _bpf_ids("link")
        # ... and nothing new without an owner: an unowned program would be held by a link.
        new_links = _bpf_ids("link") - links_before - _owned("link_id")
        if not (left or progs_left or links_left or new_links) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stderr = (tmp_path / "stderr").read_text()
    assert not left, f"left running: {left} (seen before the {sig.name}: {seen})"
    assert not progs_left and not links_left, (progs_left, links_left)
    assert not new_links, new_links
    assert "Traceback" not in stderr, stderr
    if moment == "shutdown" and rc == 0:
        return  # the run had finished (its exit under way) before the signal could land
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
        return
    assert rc == 128 + sig, (rc, stderr)
    if kind == "run" and moment != "before-attach":
        # Ctrl-C, SIGTERM: the run stops the normal way and keeps what it gathered.
        meta = json.loads((out / "run.json").read_text())
        ended = {"workload": "ctrl-c" if sig == signal.SIGINT else "signal"}
        if moment in ended:
            assert meta["ended_by"] == ended[moment]
        assert (out / "stdout.txt").exists()


def _owned(field: str) -> set[int]:
    """IDs of BPF objects (`prog_id`/`link_id`) some live process holds a descriptor of."""
    ids: set[int] = set()
    for pid in _procs():
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
            except OSError:
                continue
            ids |= {int(m) for m in re.findall(rf"^{field}:\s+(\d+)$", text, re.M)}
    return ids

"""Whatever ends the harness, nothing it started outlives it: no child process, no BPF program,
no BPF link, no mount, no temporary file. Every command that spawns (`harness run`,
`crosscheck`, `bench`, `matrix --kernels host`) is killed with SIGINT, SIGTERM and SIGKILL at
three moments found by watching the real processes (bpftrace has just appeared: before attach;
the workload is running; the workload is gone: shutdown).

After each kill, within 2 s: none of the harness's processes is left, none of the programs or
links they were seen holding exists, and the machine has no program or link without an owner
that it did not have before (compared as sets, not counts: other engineers load and unload BPF
on this machine all the while, each holding what it loaded); its TMPDIR is empty and no mount
of its own is left. After SIGINT/SIGTERM the run directory keeps bpftrace's stdout.txt and a
CSV of every map in it, with as many rows as stdout.txt has entries (run, crosscheck, matrix;
bench keeps no raw output)."""

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
from typing import Any

import pytest
from processes import reaped

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
        progs, links = _fd_bpf_ids(pid)
        self.progs |= progs
        self.links |= links

    def wait_for(self, what: str, found: Callable[[dict[int, list[bytes]]], bool],
                 proc: subprocess.Popen[bytes], timeout: float = 120,
                 may_finish: bool = False) -> None:
        """Until `found(children)`; `may_finish`: a harness that ended (status 0) meanwhile is
        there too (a workload's end can be followed by the whole stop before the next look)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found(self.children()):
                return
            if proc.poll() is not None:
                if may_finish and proc.returncode == 0:
                    return
                pytest.fail(f"the harness exited (rc {proc.returncode}) before {what}")
            time.sleep(0.005)
        pytest.fail(f"no {what} within {timeout} s")


def _bpf_objects(kind: str) -> list[dict[str, Any]]:
    done = subprocess.run(["bpftool", kind, "show", "-j"], capture_output=True, text=True,
                          check=True)
    return list(json.loads(done.stdout or "[]"))


def _bpf_ids(kind: str) -> set[int]:
    return {item["id"] for item in _bpf_objects(kind)}


def _fd_bpf_ids(pid: int) -> tuple[set[int], set[int]]:
    """(prog IDs, link IDs) process `pid` holds a descriptor of, from /proc/PID/fdinfo."""
    progs: set[int] = set()
    links: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return progs, links
    for fd in fds:
        try:
            text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        progs |= {int(m) for m in re.findall(r"^prog_id:\s+(\d+)$", text, re.M)}
        links |= {int(m) for m in re.findall(r"^link_id:\s+(\d+)$", text, re.M)}
    return progs, links


def _held() -> tuple[set[int], set[int]]:
    """(prog IDs, link IDs) some live process holds a descriptor of (Debian's bpftool 7.1 is
    built without the iterator that fills `pids` in its JSON, so /proc is read instead)."""
    progs: set[int] = set()
    links: set[int] = set()
    for pid in _procs():
        held = _fd_bpf_ids(pid)
        progs |= held[0]
        links |= held[1]
    return progs, links


def _unowned() -> set[tuple[str, int]]:
    """Every BPF program and link on the machine that no live process holds: what a leak looks
    like, since a leaked program or link outlives its owner. A program a held link attaches is
    held through it. Other engineers' live tracers hold theirs, so they never show here."""
    links = _bpf_objects("link")
    progs = _bpf_ids("prog")
    held_progs, held_links = _held()
    held_progs |= {int(ln["prog_id"]) for ln in links if ln["id"] in held_links and "prog_id" in ln}
    return ({("prog", i) for i in progs - held_progs}
            | {("link", ln["id"]) for ln in links if ln["id"] not in held_links})


def _is(argv: list[bytes], name: str) -> bool:
    return bool(argv) and Path(argv[0].decode(errors="replace")).name == name


def _workload_running(argv: list[bytes], script: str) -> bool:
    """The released workload: the gate shim exec'd `python SCRIPT ...` (no `-c SHIM` left)."""
    return len(argv) > 1 and argv[1].decode(errors="replace").endswith(script)


def _command(kind: str, moment: str, out: Path) -> list[str]:
    harness = [sys.executable, "-m", "harness.cli"]
    if kind == "run":
        # The workload forks (sh runs sleep as its child): the group guard must reach it.
        work = "sh -c 'sleep 1; true'" if moment == "shutdown" else "sh -c 'sleep 60; true'"
        return [*harness, "run", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm",
                "--workload", work, "--out", str(out)]
    if kind == "bench":
        # One round: the untraced run first, then the same 2e6 getppid() calls under bpftrace.
        return [*harness, "bench", "syscalls", "--events", "2000000", "--rounds", "1",
                "--warmup", "0", "--modes", "bpftrace", "--no-report", "-q", "--out", str(out)]
    count = "200" if moment == "shutdown" else "5000000"
    if kind == "matrix":  # the host row alone: a crosscheck per kernel, no guest to boot
        return [*harness, "matrix", "ktrace", "--kernels", "host", "--count", count, "-q",
                "--out", str(out)]
    return [*harness, "crosscheck", "ktrace", "--count", count, "--out", str(out)]


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _syscall_loop(argv: list[bytes]) -> bool:
    return bool(argv) and Path(argv[0].decode(errors="replace")).name.startswith("syscall_loop-")


def _reach(kind: str, moment: str, watch: Watch, proc: subprocess.Popen[bytes]) -> None:
    """Block until the harness is at `moment`, judged from its live processes."""
    watch.wait_for("bpftrace", lambda ps: any(_is(a, "bpftrace") for a in ps.values()), proc)
    if moment == "before-attach":
        return
    if kind == "run":
        watch.wait_for("the workload's sleep", lambda ps: any(_is(a, "sleep") for a in ps.values()),
                       proc, may_finish=moment == "shutdown")
        if moment == "shutdown":
            watch.wait_for("the workload's end",
                           lambda ps: not any(_is(a, "sleep") or _is(a, "sh") for a in ps.values()),
                           proc, may_finish=True)
        return
    if kind == "bench":
        # The traced run's workload, released: it has begun its loop of getppid() calls while
        # bpftrace runs (the untraced run's loop comes first, with no bpftrace beside it).
        # Spinning, not starting: the C loop's CPU time grows after it was first seen (the
        # Python start-up before its exec counts too, so a fixed level says nothing), and
        # bpftrace releases it only once attached.
        first: dict[int, int] = {}

        def spinning(ps: dict[int, list[bytes]]) -> bool:
            loops = {p: _cpu_ticks(p) for p, a in ps.items() if _syscall_loop(a)}
            grew = any(t - first.setdefault(p, t) >= 2 for p, t in loops.items())
            return grew and any(_is(a, "bpftrace") for a in ps.values())

        watch.wait_for("the traced getppid() loop", spinning, proc)
        if moment == "shutdown":
            watch.wait_for("the loop's end",
                           lambda ps: not any(_syscall_loop(a) for a in ps.values()), proc,
                           may_finish=True)
        return
    if moment == "workload":
        watch.wait_for("the released udp_send.py",
                       lambda ps: any(_workload_running(a, "udp_send.py") for a in ps.values()),
                       proc)
        time.sleep(0.3)  # sending: the twin's ring buffer and bpftrace's maps are filling
        return
    watch.wait_for("the workload's end",
                   lambda ps: not any(b"udp_send.py" in b" ".join(a) for a in ps.values()), proc,
                   may_finish=True)


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("kind", ["run", "crosscheck", "bench", "matrix"])
def test_killed_harness_leaves_nothing_behind(
    kind: str, sig: signal.Signals, moment: str, tmp_path: Path
) -> None:
    unowned_before = _unowned()
    mounts_before = _mounts()
    token = uuid.uuid4().hex
    out = tmp_path / "out"
    tmp = tmp_path / "tmp"  # the harness's TMPDIR: every temporary file it makes is in here
    tmp.mkdir()
    with (tmp_path / "stdout").open("wb") as so, (tmp_path / "stderr").open("wb") as se:
        proc = subprocess.Popen(
            _command(kind, moment, out), cwd=REPO, stdout=so, stderr=se,
            env={**os.environ, "KTRACE_KILL_TEST": token, "KTRACE_NO_REPORT": "1",
                 "TMPDIR": str(tmp)},
        )
    watch = Watch(proc.pid, token)
    with reaped(proc):
        _reach(kind, moment, watch, proc)
        seen = watch.children()
        proc.send_signal(sig)
        rc = proc.wait(120)
    # Whatever the harness made exists by now: a newer ID is some other process's object.
    newest = {kind: max(_bpf_ids(kind), default=0) for kind in ("prog", "link")}
    # Within 2 s of the harness's exit: no child, none of the programs or links they held, and
    # on the whole machine no program or link without an owner that had one before the test.
    # Other engineers' tracers come and go meanwhile: one that is exiting shows its objects
    # unowned for some milliseconds, so a stray counts only if it stayed unowned through the
    # last half second of the window (a leak stays; that transient does not).
    start = time.monotonic()
    recent: list[set[tuple[str, int]]] = []
    while True:
        left = watch.children()
        progs_left = watch.progs & _bpf_ids("prog")
        links_left = watch.links & _bpf_ids("link")
        stray = {(k, i) for k, i in _unowned() - unowned_before if i <= newest[k]}
        elapsed = time.monotonic() - start
        temps = sorted(p.name for p in tmp.iterdir())
        if elapsed >= 1.5:
            recent.append(stray)
        if not (left or progs_left or links_left or stray or temps) or elapsed > 2:
            break
        time.sleep(0.05)
    leaked = set.intersection(*recent) if recent else set()
    stderr = (tmp_path / "stderr").read_text()
    assert not left, f"left running: {left} (seen before the {sig.name}: {seen})"
    assert not progs_left and not links_left, (progs_left, links_left)
    assert not leaked, f"BPF objects left without an owner: {sorted(leaked)}"
    assert not temps, f"temporary files left in TMPDIR: {temps}"
    assert not _mounts() - mounts_before, _mounts() - mounts_before
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
    if kind != "bench":
        _kept_every_map({"run": out, "crosscheck": out / "bpftrace",
                         "matrix": out / "host" / "bpftrace"}[kind])
    if kind in ("crosscheck", "matrix"):
        verdict = json.loads(((out / "host" if kind == "matrix" else out)
                              / "verdict.json").read_text())
        assert verdict["ended_by"] in ("ctrl-c", "signal") and verdict["passed"] is False


def _mounts() -> set[str]:
    """Mount points of this mount namespace that are the harness's (its cache, its temp)."""
    points = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    return {p for p in points if "ktrace" in p or "pytest-of" in p}


def _kept_every_map(run: Path) -> None:
    """bpftrace's stdout.txt is there, and each map it printed has its CSV with one row per
    entry printed (read from the raw text: lines that begin `@name[` or `@name:`; a
    histogram's rows are its buckets, so only its CSV's presence is checked)."""
    stdout = (run / "stdout.txt").read_text()
    entries: dict[str, int] = {}
    hists: set[str] = set()
    for line in stdout.splitlines():
        m = re.match(r"^(@\w*)[\[:]", line)  # an entry; a stack's key goes on below
        if m:
            entries[m.group(1)] = entries.get(m.group(1), 0) + 1
            if line.rstrip().endswith(":"):  # a histogram's header: its buckets follow
                hists.add(m.group(1))
    from harness.report.rundir import csv_name

    for name, n in entries.items():
        csv = run / csv_name(name)
        assert csv.is_file(), f"{name} printed in {run}/stdout.txt has no CSV"
        if name not in hists:
            with csv.open() as f:
                rows = sum(1 for _ in f) - 1
            assert rows == n, (name, rows, n)


STOP_IN_FINALIZER = r"""
import os, signal, time
from harness.cli import _StopOnSignal

stopper = _StopOnSignal("run")
stopper.install()


class Closing:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # lands while this finalizer runs
        t = time.monotonic()
        while time.monotonic() - t < 0.3:
            pass


try:
    x = Closing()
    del x
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("not stopped")
except KeyboardInterrupt as stop:
    print("stopped by", stop.signum, stopper.signum)
"""


def test_a_signal_inside_a_finalizer_still_stops_the_harness() -> None:
    """A SIGTERM that lands while a finalizer runs (a full-suite run caught one in ZipFile's
    __del__) raised where Python ignores exceptions: a traceback on stderr and no stop. The stop
    is raised again outside the finalizer, with its signal, and nothing is printed."""
    done = subprocess.run([sys.executable, "-c", STOP_IN_FINALIZER], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.strip() == f"stopped by {int(signal.SIGTERM)} {int(signal.SIGTERM)}", (
        done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr

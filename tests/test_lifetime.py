"""The kill-path guard (harness.host.lifetime): a process that spawned through it and registered
a temporary path is SIGKILLed; its children's whole groups die and the path goes, and a process
that ends normally leaves what it released alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from harness.host.lifetime import WATCHDOG_SH, Watchdog

# A harness stand-in: spawns `sh -c 'sleep 300 & sleep 300'` (a group of three), makes and
# registers a directory, says "ready", then waits to be killed; with "release" it first
# reaps its child and releases the path, as a harness finishing normally does.
CHILD = r"""
import sys, time
from pathlib import Path
from harness.host.lifetime import reap, spawn, watchdog
proc = spawn(["sh", "-c", "sleep 300 & sleep 300"])
scratch = Path(sys.argv[1]); scratch.mkdir()
watchdog().guard_path(scratch)
if sys.argv[2] == "release":
    reap(proc)
    watchdog().release_path(scratch)
print("ready", flush=True)
time.sleep(300)
"""


def _tagged(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z" and f"LIFETIME_TEST={token}".encode() in env:
            found.append(int(entry))
    return found


def _run_child(tmp_path: Path, mode: str) -> tuple[subprocess.Popen[str], str, Path]:
    token = uuid.uuid4().hex
    scratch = tmp_path / "scratch"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(scratch), mode], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "LIFETIME_TEST": token},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc, token, scratch


def _gone_within(token: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _tagged(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_sigkill_kills_every_registered_group_and_removes_registered_paths(
    tmp_path: Path,
) -> None:
    proc, token, scratch = _run_child(tmp_path, "keep")
    assert len(_tagged(token)) == 5  # the stand-in, its watchdog, sh and two sleeps
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _gone_within(token, 3) == []
    assert not scratch.exists()


def test_what_was_released_is_left_alone(tmp_path: Path) -> None:
    proc, token, scratch = _run_child(tmp_path, "release")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _gone_within(token, 3) == []
    assert scratch.is_dir()


def test_a_watchdog_killed_under_the_harness_is_started_again_with_everything(
    tmp_path: Path,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    dog = Watchdog()
    dog.guard_path(tmp_path / "a")
    assert dog.pid is not None
    os.kill(dog.pid, signal.SIGKILL)  # EOF never came: "a" stays
    time.sleep(0.1)
    dog.guard_path(tmp_path / "b")  # a new watchdog, told about "a" and "b"
    assert (tmp_path / "a").is_dir()
    assert dog._proc is not None and dog._proc.stdin is not None
    dog._proc.stdin.close()  # what the harness's death looks like to it
    dog._proc.wait(5)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_paths_with_spaces_and_glob_characters_are_taken_literally(tmp_path: Path) -> None:
    odd = tmp_path / "a dir [*]"
    odd.mkdir()
    bystander = tmp_path / "a dir x"
    bystander.mkdir()
    done = subprocess.run(
        ["sh", "-c", WATCHDOG_SH], input=f"+p {odd}\n", text=True, timeout=10, check=False
    )
    assert done.returncode == 0
    assert not odd.exists() and bystander.is_dir()


def test_a_lane_directory_whose_harness_is_gone_is_swept(tmp_path: Path) -> None:
    """A guest's scratch directory outlives its harness only when the watchdog died too: the
    next lane to start removes those whose owner (the pid in the name) is gone, no other."""
    from harness.lanes.vm import _sweep_orphans

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / f"lane-6.1-{gone.pid}-abc_12").mkdir()
    (tmp_path / f"lane-6.12-{os.getpid()}-def34").mkdir()
    (tmp_path / "lane-6.1-old_style").mkdir()  # no owner named: not ours to judge
    assert _sweep_orphans(tmp_path) == [f"lane-6.1-{gone.pid}-abc_12"]
    assert {p.name for p in tmp_path.iterdir()} == {
        f"lane-6.12-{os.getpid()}-def34", "lane-6.1-old_style"}


# A fleet member stand-in: a thread spawns `sleep 300` (as a member's thread starts a guest's
# vng, or an ssh session the process keeps) and ends; the process says whether the child is
# alive after that thread is gone, then waits to be killed.
FROM_A_THREAD = r"""
import threading, time
from harness.host.lifetime import spawn
got = []
member = threading.Thread(target=lambda: got.append(spawn(["sleep", "300"])))
member.start()
member.join()
time.sleep(1)  # a parent-death signal of the member's thread would have landed by now
print("alive" if got[0].poll() is None else f"dead {got[0].returncode}", flush=True)
time.sleep(300)
"""


def test_a_child_spawned_from_a_thread_outlives_the_thread_not_the_harness() -> None:
    """PR_SET_PDEATHSIG follows the thread that forked the child, not the process: a guest's
    vng spawned by a fleet member's thread was SIGKILLed when that thread ended, while what it
    had started (virtme-run, qemu) lived on. spawn() forks from a thread that lives as long as
    the process: the child outlives the thread that asked for it, and dies with the harness."""
    token = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", FROM_A_THREAD], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "LIFETIME_TEST": token})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "alive\n"
        assert len(_tagged(token)) == 3  # the stand-in, its watchdog and the sleep
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _gone_within(token, 3) == []


def test_a_group_whose_leader_exited_first_is_still_killed_by_reap() -> None:
    """A guest's vng may exit before the qemu it started: checked with exited(), which does not
    wait for it, the leader's pid stays its own (and the group's id with it) until reap(), which
    then kills what is left of the group."""
    from harness.host.lifetime import exited, reap, spawn

    token = uuid.uuid4().hex
    proc = spawn(["sh", "-c", "sleep 300 & echo started"], stdout=subprocess.PIPE, text=True,
                 env={**os.environ, "LIFETIME_TEST": token})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        deadline = time.monotonic() + 10
        while not exited(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exited(proc) and proc.returncode is None  # exited, not waited for
        assert len(_tagged(token)) == 1  # the sleep, left in the leader's group
    finally:
        reap(proc)
        proc.stdout.close()  # type: ignore[union-attr]
    assert proc.returncode == 0
    assert _gone_within(token, 3) == []

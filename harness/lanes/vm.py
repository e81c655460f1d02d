"""VM lane: run a harness command inside a Debian kernel booted by virtme-ng over the host's root.

The guest sees the host's filesystem read-only, so the same checkout, venv, bpftrace and the
host-built CO-RE object are used inside; one read-write directory (the run's results directory)
carries the outputs back. KVM is used when a guest really boots with it (probed once per host
kernel and cached), TCG otherwise; the choice is recorded with the results.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.host.capabilities import capabilities
from harness.host.lifetime import exited, reap, shielded, spawn, temporary_path, watchdog
from harness.host.runner import Interrupted, raise_if_asked
from harness.host.symbols import Kallsyms
from harness.lanes import wire
from harness.lanes.debian import KernelImage, fetch
from harness.lanes.elsewhere import Asked, ElsewhereLane, capabilities_of
from harness.paths import CHECKOUT, cache_home
from harness.progress import Progress, silent

if TYPE_CHECKING:
    from harness.host.capabilities import Capabilities

DEFAULT_SERIES = "6.1"
KVM_PROBE_TIMEOUT = 25.0


class VMError(HarnessError):
    """The guest did not boot, or the command inside did not finish."""


def lane_series(lane: str) -> str:
    """'vm' -> the default series, 'vm:6.12' -> '6.12'; anything else is a usage error."""
    kind, _, series = lane.partition(":")
    if kind != "vm":
        raise VMError(
            f"unknown lane {lane!r}", "use --lane host, vm, vm:6.12 or ssh:[user@]host[:port]"
        )
    return series or DEFAULT_SERIES


def _vng() -> str:
    found = shutil.which("vng") or shutil.which("vng", path=str(Path(sys.executable).parent))
    if found is None:
        raise VMError(
            "virtme-ng (vng) is not installed", "pip install virtme-ng (scripts/setup.sh)"
        )
    if shutil.which("qemu-system-x86_64") is None:
        raise VMError("qemu-system-x86_64 is not installed", "apt-get install qemu-system-x86")
    return found


def _env(tmp: Path) -> dict[str, str]:
    """vng runs virtme-run from the venv's bin; make sure it is on PATH. virtme-run makes a
    temporary file per boot (`virtme_ret*`) and removes it only when it exits normally: TMPDIR
    puts it in `tmp`, a directory the lane removes (and the watchdog, if the harness dies)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp)
    return env


def _boot(
    kernel: KernelImage, script: str, rwdir: Path, accel: str, timeout: float,
    progress: Progress = silent,
) -> tuple[subprocess.CompletedProcess[str] | None, float | None, float]:
    """Boot, run `script` (a shell script in rwdir), wait; returns (process, boot_s, total_s).
    `progress` hears booting, ready and running, each with its elapsed seconds."""
    job = rwdir / "job.sh"
    job.write_text("#!/bin/sh\n: > " + shlex.quote(str(rwdir / "booted")) + "\n" + script)
    job.chmod(0o755)
    argv = [
        _vng(),
        "--run",
        str(kernel.vmlinuz),
        "--rwdir",
        str(rwdir),
        "--memory",
        "2G",
        "--cpus",
        "2",
        "--verbose",
        *(["--disable-kvm"] if accel == "tcg" else []),
        "--exec",
        str(job),
    ]
    t0 = time.monotonic()
    boot_s = None
    tmp = rwdir / "host-tmp"
    tmp.mkdir(exist_ok=True)
    # vng's children (virtme-run, qemu) stay in its process group: no guest outlives the harness.
    with spawn(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(tmp),
        stdin=subprocess.DEVNULL,
    ) as proc:
        try:
            out_chunks: list[str] = []
            reader = _Reader(proc, out_chunks)
            reported = -VMLane.REPORT_EVERY
            while not exited(proc):  # not waited for: reap() still reaches the guest's group
                now = time.monotonic() - t0
                if boot_s is None and (rwdir / "booted").exists():
                    boot_s = now
                    progress(f"guest {kernel.release} ready", boot_s, None, "s")
                if now - reported >= VMLane.REPORT_EVERY:
                    reported = now
                    if boot_s is None:
                        progress(f"booting {kernel.release} ({accel})", now, None, "s")
                    else:
                        progress("running in the guest", now - boot_s, None, "s")
                if time.monotonic() - t0 > timeout:
                    reap(proc)
                    reader.join()
                    return None, boot_s, time.monotonic() - t0
                time.sleep(0.1)
            reader.join()
            if boot_s is None and (rwdir / "booted").exists():
                boot_s = time.monotonic() - t0
        finally:
            reap(proc)
        done = subprocess.CompletedProcess(argv, proc.returncode, "".join(out_chunks), "")
    return done, boot_s, time.monotonic() - t0


class _Reader:
    """Drain the guest console in a thread so qemu never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen[str], chunks: list[str]) -> None:
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=lambda: chunks.extend(stream), daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(10)


def _accel_cache() -> Path:
    return cache_home() / f"accel-{os.uname().release}.json"


def cached_accel() -> str | None:
    """The accelerator the last KVM probe on this host kernel chose, if one ran."""
    cache = _accel_cache()
    return str(json.loads(cache.read_text())["accel"]) if cache.exists() else None


def accel_choice(kernel: KernelImage, progress: Progress = silent) -> str:
    """'kvm' when a guest boots and runs a command with KVM, else 'tcg' (cached per host)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    known = cached_accel()
    if known is not None:
        return known
    progress("probing KVM (one short boot, cached for this host kernel)")
    cache = _accel_cache()
    rw = Path(tempfile.mkdtemp(prefix="ktrace-kvm-", dir=_rw_parent()))
    try:
        with temporary_path(rw):
            done, _, _ = _boot(
                kernel, f": > {shlex.quote(str(rw / 'ran'))}\n", rw, "kvm", KVM_PROBE_TIMEOUT
            )
            accel = "kvm" if done is not None and (rw / "ran").exists() else "tcg"
    finally:
        shutil.rmtree(rw, ignore_errors=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"accel": accel, "probed": time.time()}))
    return accel


def _rw_parent() -> Path:
    """Scratch space given to guests read-write, kept with the other caches."""
    path = cache_home() / "vm-scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sweep_orphans(parent: Path) -> list[str]:
    """Remove the lane directories (`lane-SERIES-PID-*`) of harness processes that are gone:
    close() and the watchdog remove a lane's own, so one is left only when both were killed."""
    removed = []
    for lane in parent.glob("lane-*-*-*"):
        owner = lane.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(lane, ignore_errors=True)
            removed.append(lane.name)
    return removed


# --- A booted guest serving one request per run (lanes/guest.py runs inside) -----------------

VM_MIN_TIMEOUT = 300.0  # under TCG bpftrace alone spends tens of seconds before it attaches
STOP_WAIT = 120.0  # seconds an interrupted guest run may take to stop and answer (TCG is slow)
BOOT_TIMEOUT = float(os.environ.get("KTRACE_VM_BOOT_TIMEOUT", "900"))


class VMLane(ElsewhereLane):
    """A Debian kernel under virtme-ng, booted on first use and kept for the process's life.

    The guest runs `python -m harness.lanes.guest DIR`; requests and answers are JSON files in
    DIR, the one directory the guest may write. Codegen, parsing, frames and reports stay on the
    host; the guest runs bpftrace, the twin loader and the workload only.

    A boot takes 30-90 s under TCG, so the `progress` a call is given hears each phase with its
    elapsed seconds: fetching the kernel, booting, guest ready, running a request in the guest.
    """

    REPORT_EVERY = 0.5  # seconds between two reports of one phase
    kind = "VM"
    min_timeout = VM_MIN_TIMEOUT

    def __init__(self, series: str, boot_timeout: float = BOOT_TIMEOUT) -> None:
        self.series = series
        self.boot_timeout = boot_timeout
        self.name = f"vm:{series}"
        self.proc: subprocess.Popen[str] | None = None
        self.dir: Path | None = None
        self.facts: dict[str, object] = {}
        self.console: list[str] = []
        self.reader: _Reader | None = None
        self.accel = ""
        self.release = ""
        self.boot_s: float | None = None
        self._n = 0
        self._kallsyms: Kallsyms | None = None
        self.interrupted: int | None = None  # a stop asked from another thread (interrupt)

    def interrupt(self, signum: int | None) -> None:
        """A stop from another thread (a fleet's main thread): a boot under way is given up,
        the guest's run in flight stops as a Ctrl-C stops it and its partial capture comes
        back; no other run starts. None clears it."""
        self.interrupted = signum

    # -- lifecycle --
    def start(self, progress: Progress = silent) -> None:
        """Boot the guest and wait for its agent's ready.json (once)."""
        if self.proc is not None:
            return
        self.console = []  # this boot's console only
        progress(f"fetching kernel {self.series}")
        kernel = fetch(self.series, progress)
        self.release = kernel.release
        self.accel = accel_choice(kernel, progress)
        # The harness's pid in the name: whose it is, for a look at vm-scratch (and for a test).
        _sweep_orphans(_rw_parent())
        self.dir = Path(tempfile.mkdtemp(prefix=f"lane-{self.series}-{os.getpid()}-",
                                         dir=_rw_parent()))
        watchdog().guard_path(self.dir)  # removed by close(), or by the watchdog
        for sub in ("req", "resp", "host-tmp"):
            (self.dir / sub).mkdir()
        agent = f"{shlex.quote(sys.executable)} -m harness.lanes.guest {shlex.quote(str(self.dir))}"
        argv = [
            _vng(), "--run", str(kernel.vmlinuz), "--rwdir", str(self.dir),
            "--memory", "2G", "--cpus", "2",
            *(["--disable-kvm"] if self.accel == "tcg" else []),
            "--exec", agent,
        ]  # fmt: skip
        t0 = time.monotonic()
        # vng's children (virtme-run, qemu) stay in its process group: the watchdog kills the
        # group if this process dies without close(), so no guest outlives the harness.
        self.proc = spawn(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_env(self.dir / "host-tmp"),
            cwd=str(CHECKOUT or self.dir),
        )
        self.reader = _Reader(self.proc, self.console)
        self.wait_ready(t0, progress)

    def wait_ready(self, t0: float, progress: Progress = silent) -> None:
        """Wait for the agent's ready.json (the guest booted and its agent runs), reporting
        the seconds since `t0`, when the guest was started; a guest that exits or outlasts
        boot_timeout is closed and raised as one line."""
        assert self.dir is not None and self.proc is not None
        ready = self.dir / "ready.json"
        booting = f"booting {self.release} ({self.accel})"
        reported = -self.REPORT_EVERY
        while not ready.exists():
            elapsed = time.monotonic() - t0
            if self.interrupted is not None:  # nothing gathered yet: the boot is given up
                self.close()
                raise Interrupted(self.interrupted, kept=False)
            gone = exited(self.proc)
            if gone or elapsed > self.boot_timeout:
                proc = self.proc
                self.close()
                what = f"exited (status {proc.returncode})" if gone else (
                    "did not start its agent"
                )
                if self.reader is not None:
                    self.reader.join()  # the console's last lines say why it exited
                raise VMError(
                    f"guest {self.release} ({self.accel}) {what} after "
                    f"{elapsed:.0f}s; console: {self._tail()}",
                    "raise KTRACE_VM_BOOT_TIMEOUT under TCG, or see `harness doctor`",
                )
            if elapsed - reported >= self.REPORT_EVERY:
                progress(booting, elapsed, None, "s")
                reported = elapsed
            time.sleep(0.1)
        self.boot_s = time.monotonic() - t0
        self.facts = json.loads(ready.read_text())
        progress(f"guest {self.release} ready", self.boot_s, None, "s")

    def _tail(self) -> str:
        lines = [ln.strip() for ln in "".join(self.console).splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or "no console output"

    def close(self) -> None:
        """Ask the agent to shut down (the guest powers off), then make sure qemu is gone; a
        guest whose agent never started (a boot given up) is not waited for."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # vng is never waited for before reap() (exited() only looks): its pid stays its own,
        # and so the group's id, so reap() kills whatever is left of the guest (virtme-run,
        # qemu) even when vng went first (killed by someone, or its own failure).
        if not exited(proc) and self.dir is not None and (self.dir / "ready.json").exists():
            with contextlib.suppress(OSError):
                self._send({"op": "shutdown"})
            deadline = time.monotonic() + 20
            while not exited(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
        reap(proc)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            watchdog().release_path(self.dir)
        # What belonged to that boot: a later call boots anew, and its kernel's addresses
        # differ (KASLR), so the old guest's kallsyms would symbolise every stack wrongly.
        self.dir, self._kallsyms, self._n = None, None, 0

    # -- requests --
    def _send(self, req: dict[str, object]) -> str:
        assert self.dir is not None
        self._n += 1
        n = f"{self._n:06d}"
        tmp = self.dir / "req" / f"{n}.tmp"
        tmp.write_text(json.dumps(req))
        tmp.replace(self.dir / "req" / f"{n}.json")
        return n

    def call(self, op: str, req: Any, program_for: Asked, progress: Progress) -> dict[str, Any]:
        return self._call({"op": op, **wire.record(req)}, program_for, progress)

    def _call(
        self, req: dict[str, object], program_for: Asked = None, progress: Progress = silent,
    ) -> dict[str, Any]:
        """Send one request; answer the agent's pid question with the program text; wait.
        Ctrl-C/SIGTERM (or interrupt() from another thread): the guest stops its tracers the
        normal way and answers with what they gathered, stopped by that signal; the wait for
        that answer is not cut short by another signal."""
        running = req["op"] in ("run", "gather", "bench")
        if running and self.interrupted is not None:
            raise Interrupted(self.interrupted, kept=False)  # stopped before it started
        self.start(progress)
        assert self.dir is not None and self.proc is not None
        n = self._send(req)
        try:
            return self._answer(n, req, program_for, progress)
        except KeyboardInterrupt as stop:
            if not running:
                raise
            signum = getattr(stop, "signum", int(signal.SIGINT))
        (self.dir / "req" / f"{n}.stop").write_text(str(signum))
        with shielded():
            try:
                data = self._answer(n, req, program_for, progress, STOP_WAIT)
            except HarnessError:
                data = {"ok": False}
        if not data.get("ok"):  # the guest's stopped run gave nothing back
            raise Interrupted(signum, kept=False)
        data["stopped_by"] = signum
        return data

    def _answer(
        self, n: str, req: dict[str, object], program_for: Asked, progress: Progress,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Wait for the answer to request `n` (None: as long as the guest runs)."""
        assert self.dir is not None and self.proc is not None
        answer, pid_file = self.dir / "resp" / f"{n}.json", self.dir / "resp" / f"{n}.pid"
        t0 = reported = time.monotonic()
        while not answer.exists():
            if timeout is None and req["op"] in ("run", "gather", "bench"):
                raise_if_asked(lambda: self.interrupted)  # interrupt(): as a Ctrl-C here
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise VMError(f"the guest did not answer within {timeout:g}s", "")
            if req["op"] in ("run", "gather") and time.monotonic() - reported >= self.REPORT_EVERY:
                reported = time.monotonic()
                progress(f"running in the guest ({req['op']})", reported - t0, None, "s")
            if pid_file.exists() and program_for is not None:
                pid = json.loads(pid_file.read_text())["pid"]
                pid_file.unlink()
                tmp = self.dir / "req" / f"{n}.program.tmp"
                tmp.write_text(program_for(pid))
                tmp.replace(self.dir / "req" / f"{n}.program")
            if exited(self.proc):
                raise VMError(
                    f"guest {self.release} stopped during a request; console: {self._tail()}",
                    "see the console above; the guest is booted again on the next run",
                )
            time.sleep(0.02)
        data: dict[str, Any] = json.loads(answer.read_text())
        if not data["ok"]:
            raise wire.typed_error(data["error"])
        return data

    # -- the Lane interface (run_bpftrace, gather, bench: ElsewhereLane's) --
    def capabilities(self, progress: Progress = silent) -> Capabilities:
        self.start(progress)
        # The guest runs the host's binaries over the shared root.
        return capabilities_of(self.facts, capabilities().bpftrace, kvm=self.accel == "kvm")

    def kallsyms(self) -> Kallsyms:
        if self._kallsyms is None:
            path = Path(self._call({"op": "kallsyms"})["path"])
            self._kallsyms = Kallsyms(path.read_text())
        return self._kallsyms

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "release": self.release,
            "accel": self.accel,
            "boot_s": self.boot_s,
            "agent_started_uptime_s": self.facts.get("agent_started_uptime_s"),
        }

"""VM lane: run a harness command inside a Debian kernel booted by virtme-ng over the host's root.

The guest sees the host's filesystem read-only, so the same checkout, venv, bpftrace and the
host-built CO-RE object are used inside; one read-write directory (the run's results directory)
carries the outputs back. KVM is used when a guest really boots with it (probed once per host
kernel and cached), TCG otherwise; the choice is recorded with the results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.host.lifetime import reap, shielded, spawn, temporary_path, watchdog
from harness.lanes.base import Lane
from harness.lanes.debian import KernelImage, fetch
from harness.paths import CHECKOUT, cache_home
from harness.progress import Progress, silent

if TYPE_CHECKING:
    from harness.compare.bench import Rounds, Sample, Tracer, Workload
    from harness.compare.gather import Gathered
    from harness.host.capabilities import Capabilities
    from harness.host.runner import RunResult
    from harness.host.symbols import Kallsyms

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
            while proc.poll() is None:
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
        import threading

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


class VMLane(Lane):
    """A Debian kernel under virtme-ng, booted on first use and kept for the process's life.

    The guest runs `python -m harness.lanes.guest DIR`; requests and answers are JSON files in
    DIR, the one directory the guest may write. Codegen, parsing, frames and reports stay on the
    host; the guest runs bpftrace, the twin loader and the workload only.

    A boot takes 30-90 s under TCG, so `progress` (set by trace and crosscheck for each call)
    hears each phase with its elapsed seconds: fetching the kernel, booting, guest ready,
    running a request in the guest.
    """

    REPORT_EVERY = 0.5  # seconds between two reports of one phase

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
        self.progress: Progress = silent

    # -- lifecycle --
    def start(self) -> None:
        """Boot the guest and wait for its agent's ready.json (once)."""
        if self.proc is not None:
            return
        self.console = []  # this boot's console only
        self.progress(f"fetching kernel {self.series}")
        kernel = fetch(self.series, self.progress)
        self.release = kernel.release
        self.accel = accel_choice(kernel, self.progress)
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
        self.wait_ready(t0)

    def wait_ready(self, t0: float) -> None:
        """Wait for the agent's ready.json (the guest booted and its agent runs), reporting
        the seconds since `t0`, when the guest was started; a guest that exits or outlasts
        boot_timeout is closed and raised as one line."""
        assert self.dir is not None and self.proc is not None
        ready = self.dir / "ready.json"
        booting = f"booting {self.release} ({self.accel})"
        reported = -self.REPORT_EVERY
        while not ready.exists():
            elapsed = time.monotonic() - t0
            if self.proc.poll() is not None or elapsed > self.boot_timeout:
                status = self.proc.poll()
                what = f"exited (status {status})" if status is not None else (
                    "did not start its agent"
                )
                self.close()
                if self.reader is not None:
                    self.reader.join()  # the console's last lines say why it exited
                raise VMError(
                    f"guest {self.release} ({self.accel}) {what} after "
                    f"{elapsed:.0f}s; console: {self._tail()}",
                    "raise KTRACE_VM_BOOT_TIMEOUT under TCG, or see `harness doctor`",
                )
            if elapsed - reported >= self.REPORT_EVERY:
                self.progress(booting, elapsed, None, "s")
                reported = elapsed
            time.sleep(0.1)
        self.boot_s = time.monotonic() - t0
        self.facts = json.loads(ready.read_text())
        self.progress(f"guest {self.release} ready", self.boot_s, None, "s")

    def _tail(self) -> str:
        lines = [ln.strip() for ln in "".join(self.console).splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or "no console output"

    def close(self) -> None:
        """Ask the agent to shut down (the guest powers off), then make sure qemu is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None and self.dir is not None:
            with contextlib.suppress(OSError):
                self._send({"op": "shutdown"})
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
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

    def _call(
        self, req: dict[str, object], program_for: Callable[[int | None], str] | None = None
    ) -> dict[str, Any]:
        """Send one request; answer the agent's pid question with the program text; wait."""
        self.start()
        assert self.dir is not None and self.proc is not None
        n = self._send(req)
        try:
            return self._answer(n, req, program_for)
        except KeyboardInterrupt as stop:
            if req["op"] not in ("run", "gather", "bench"):
                raise
            signum = getattr(stop, "signum", int(signal.SIGINT))
        # Ctrl-C/SIGTERM: the guest stops its tracers the normal way and answers with what
        # they gathered; the wait for that answer is not cut short by another signal.
        from harness.host.runner import Interrupted

        (self.dir / "req" / f"{n}.stop").write_text(str(signum))
        with shielded():
            try:
                data = self._answer(n, req, program_for, STOP_WAIT)
            except HarnessError:
                data = {"ok": False}
        if not data.get("ok"):
            raise Interrupted(signum)
        data["interrupted"] = signum
        return data

    def _answer(
        self, n: str, req: dict[str, object], program_for: Callable[[int | None], str] | None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Wait for the answer to request `n` (None: as long as the guest runs)."""
        assert self.dir is not None and self.proc is not None
        answer, pid_file = self.dir / "resp" / f"{n}.json", self.dir / "resp" / f"{n}.pid"
        t0 = reported = time.monotonic()
        while not answer.exists():
            if timeout is not None and time.monotonic() - t0 > timeout:
                raise VMError(f"the guest did not answer within {timeout:g}s", "")
            if req["op"] in ("run", "gather") and time.monotonic() - reported >= self.REPORT_EVERY:
                reported = time.monotonic()
                self.progress(f"running in the guest ({req['op']})", reported - t0, None, "s")
            if pid_file.exists() and program_for is not None:
                pid = json.loads(pid_file.read_text())["pid"]
                pid_file.unlink()
                tmp = self.dir / "req" / f"{n}.program.tmp"
                tmp.write_text(program_for(pid))
                tmp.replace(self.dir / "req" / f"{n}.program")
            if self.proc.poll() is not None:
                raise VMError(
                    f"guest {self.release} stopped during a request; console: {self._tail()}",
                    "see the console above; the guest is booted again on the next run",
                )
            time.sleep(0.02)
        data: dict[str, Any] = json.loads(answer.read_text())
        if not data["ok"]:
            raise _typed_error(data["error"])
        return data

    # -- the Lane interface --
    def capabilities(self) -> Capabilities:
        from harness.host.capabilities import Capabilities, capabilities

        self.start()
        tools = capabilities()  # the guest runs the host's binaries over the shared root
        facts = self.facts
        return Capabilities(
            kernel=str(facts["kernel"]),
            arch=str(facts["arch"]),
            root=bool(facts["root"]),
            btf=bool(facts["btf"]),
            tracefs=str(facts["tracefs"]),
            kprobes=bool(facts["kprobes"]),
            kfunc=False,  # not probed in the guest (bpftrace --info takes a minute under TCG)
            lockdown=str(facts["lockdown"]),
            bpftrace=tools.bpftrace,
            clang=tools.clang,
            bpftool=tools.bpftool,
            libbpf=tools.libbpf,
            qemu=tools.qemu,
            kvm=self.accel == "kvm",
        )

    def kallsyms(self) -> Kallsyms:
        from harness.host.symbols import Kallsyms

        if self._kallsyms is None:
            path = Path(self._call({"op": "kallsyms"})["path"])
            self._kallsyms = Kallsyms(path.read_text())
        return self._kallsyms

    def run_bpftrace(
        self,
        program: str | Callable[[int | None], str],
        marker: str,
        *,
        workload: Sequence[str] | None = None,
        duration: float | None = None,
        timeout: float = 60.0,
        on_progress: Callable[[float], None] | None = None,
        bpftrace: str = "bpftrace",
    ) -> RunResult:
        req: dict[str, object] = {
            "bpftrace": bpftrace,
            "op": "run",
            "marker": marker,
            "workload": list(workload) if workload else None,
            "duration": duration,
            "timeout": max(timeout, VM_MIN_TIMEOUT),
            "program": program if isinstance(program, str) else None,
        }
        data = self._call(req, None if isinstance(program, str) else program)
        result = _run_result(data["result"], marker)
        if "interrupted" in data:  # the guest was told by SIGINT whatever stopped the host
            from harness.host.runner import Interrupted

            result.error = Interrupted(data["interrupted"])
            result.ended_by = "ctrl-c" if data["interrupted"] == signal.SIGINT else "signal"
        return result

    def gather(self, program_for: Callable[[int], str], marker: str, **kw: Any) -> Gathered:
        from harness.compare.gather import Gathered
        from harness.twin.generic import MapDump

        req = {
            "op": "gather",
            "marker": marker,
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()},
        }
        req["timeout"] = max(float(kw.get("timeout", 60.0)), VM_MIN_TIMEOUT)
        data = self._call(req, lambda pid: program_for(int(pid or 0)))
        dumps = {
            name: MapDump(
                d["name"],
                d["type"],
                d["key_size"],
                d["value_size"],
                d["ncpus"],
                [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in d["entries"]],
            )
            for name, d in data["dumps"].items()
        }
        return Gathered(
            _run_result(data["result"], marker),
            dumps,
            data["log"],
            data["workload_pid"],
            data["libbpf_attach_s"],
            data.get("interrupted"),
        )

    def bench(
        self,
        workload: Workload,
        tracers: Sequence[Tracer],
        plan: Rounds,
        progress: Callable[[Sample], None] | None = None,
    ) -> list[Sample]:
        """The rounds run in the guest (its kernel, bpftrace and the host-built twin); each
        round's program is generated here when the guest names the workload's pid, and each
        tracer's output comes back to be counted here, by the tracer's own count_events."""
        from harness.compare.bench import TOGETHER, Sample, StoppedRounds

        with_program = [t for t in tracers if t.program is not None]
        if len(with_program) > 1 or any(not t.template for t in tracers):
            raise VMError(
                "a VM bench takes tracers described as data, at most one with a program",
                "build the tracers with harness.compare.bench_cases",
            )
        req: dict[str, object] = {
            "op": "bench",
            "workload": {
                "argv": list(workload.argv),
                "events": workload.events,
                "description": workload.description,
                "gate": list(workload.gate),
            },
            "tracers": [
                {
                    "mode": t.mode,
                    "template": list(t.template),
                    "ready_prefix": t.ready_prefix,
                    "ready_text": t.ready_text,
                }
                for t in tracers
            ],
            "plan": {
                **dataclasses.asdict(plan), "timeout": max(plan.timeout, VM_MIN_TIMEOUT)
            },
        }
        program = with_program[0].program if with_program else None

        def program_for(pid: int | None) -> str:
            assert program is not None and pid is not None, "the guest asks with a pid"
            return program(pid)

        data = self._call(req, program_for if program is not None else None)
        by_mode = {t.mode: t for t in tracers}
        samples = []
        for d in data["samples"]:
            sample = Sample.from_dict(d)
            if sample.events_counted is not None:  # the index of its output, counted here
                output = data["outputs"][sample.events_counted]
                tracer = by_mode[sample.mode.removeprefix(TOGETHER)]  # both:bpftrace, too
                sample.events_counted = tracer.count_events(output)
            samples.append(sample)
            if progress is not None:
                progress(sample)
        if "interrupted" in data:  # the runs that finished before the host's Ctrl-C
            raise StoppedRounds(samples, data["interrupted"])
        return samples

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "release": self.release,
            "accel": self.accel,
            "boot_s": self.boot_s,
            "agent_started_uptime_s": self.facts.get("agent_started_uptime_s"),
        }


def _typed_error(d: dict[str, Any]) -> HarnessError:
    """The guest's error as the same typed error on the host (HarnessError when unknown)."""
    import importlib

    cls: type[BaseException] = HarnessError
    with contextlib.suppress(ImportError, AttributeError):
        found = getattr(importlib.import_module(d["module"]), d["type"])
        if isinstance(found, type) and issubclass(found, HarnessError):
            cls = found
    if cls is HarnessError and d["type"] != "HarnessError":
        return VMError(f"the guest agent failed: {d['type']}: {d['cause']}", "see the console")
    err = cls.__new__(cls)
    HarnessError.__init__(err, d["cause"], d["fix"])  # type: ignore[arg-type]
    return err  # type: ignore[return-value]


def _run_result(d: dict[str, Any], marker: str) -> RunResult:
    """A guest's RunResult, parsed here: the marker line blanked so line numbers still match."""
    from harness.host.runner import RunResult, stdout_to_parse
    from harness.output.parse import parse_text

    known = {f.name for f in dataclasses.fields(RunResult)}
    error = d.pop("error", None)
    result = RunResult(**{k: v for k, v in d.items() if k in known and k != "output"})
    result.error = _typed_error(error) if error else None
    times = getattr(result, "line_times", None)
    parse_began = time.monotonic()
    try:
        result.output = parse_text(stdout_to_parse(result.stdout, marker),
                                   line_times=times or None, program=result.program)
    except HarnessError as err:
        result.error = result.error or err
    if result.output is not None:  # the guest's own warnings (escalations, the workload's)
        result.output.warnings.extend(result.warnings)
    result.extra["parse_s"] = time.monotonic() - parse_began  # on the host, not the guest's
    return result

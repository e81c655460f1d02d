"""VM lane: run a harness command inside a Debian kernel booted by virtme-ng over the host's root.

The guest sees the host's filesystem read-only, so the same checkout, venv, bpftrace and the
host-built CO-RE object are used inside; one read-write directory (the run's results directory)
carries the outputs back. KVM is used when a guest really boots with it (probed once per host
kernel and cached), TCG otherwise; the choice is recorded with the results.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.lanes.debian import KernelImage, fetch
from harness.paths import CHECKOUT, cache_home

DEFAULT_SERIES = "6.1"
KVM_PROBE_TIMEOUT = 25.0


class VMError(HarnessError):
    """The guest did not boot, or the command inside did not finish."""


@dataclass
class GuestRun:
    """One guest session: which kernel, how it booted, and what the command inside returned."""

    series: str
    release: str
    accel: str
    boot_s: float | None
    total_s: float
    returncode: int | None
    stdout: str
    stderr: str
    console_tail: list[str]


def lane_series(lane: str) -> str:
    """'vm' -> the default series, 'vm:6.12' -> '6.12'; anything else is a usage error."""
    kind, _, series = lane.partition(":")
    if kind != "vm":
        raise VMError(f"unknown lane {lane!r}", "use --lane host, --lane vm or --lane vm:6.12")
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


def _env() -> dict[str, str]:
    """vng runs virtme-run from the venv's bin; make sure it is on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _boot(
    kernel: KernelImage, script: str, rwdir: Path, accel: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str] | None, float | None, float]:
    """Boot, run `script` (a shell script in rwdir), wait; returns (process, boot_s, total_s)."""
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
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    ) as proc:
        out_chunks: list[str] = []
        reader = _Reader(proc, out_chunks)
        while proc.poll() is None:
            if boot_s is None and (rwdir / "booted").exists():
                boot_s = time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                os.killpg(proc.pid, 9)
                proc.wait()
                reader.join()
                return None, boot_s, time.monotonic() - t0
            time.sleep(0.1)
        reader.join()
        if boot_s is None and (rwdir / "booted").exists():
            boot_s = time.monotonic() - t0
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


def accel_choice(kernel: KernelImage) -> str:
    """'kvm' when a guest boots and runs a command with KVM, else 'tcg' (cached per host)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    known = cached_accel()
    if known is not None:
        return known
    cache = _accel_cache()
    with tempfile.TemporaryDirectory(prefix="ktrace-kvm-", dir=_rw_parent()) as tmp:
        rw = Path(tmp)
        done, _, _ = _boot(
            kernel, f": > {shlex.quote(str(rw / 'ran'))}\n", rw, "kvm", KVM_PROBE_TIMEOUT
        )
        accel = "kvm" if done is not None and (rw / "ran").exists() else "tcg"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"accel": accel, "probed": time.time()}))
    return accel


def _rw_parent() -> Path:
    """Scratch space given to guests read-write, kept with the other caches."""
    path = cache_home() / "vm-scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_guest(series: str, harness_argv: list[str], rwdir: Path, timeout: float = 600) -> GuestRun:
    """Boot `series`, run `harness ARGV` inside with rwdir writable, and collect the outcome."""
    kernel = fetch(series)
    accel = accel_choice(kernel)
    rwdir.mkdir(parents=True, exist_ok=True)
    q = shlex.quote
    harness = q(str(Path(sys.executable).parent / "harness"))
    script = (
        "mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null\n"
        "mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null\n"
        f"export MPLCONFIGDIR={q(str(rwdir / '.mpl'))} KTRACE_NO_REPORT=1\n"
        f"cd {q(str(CHECKOUT or Path.cwd()))}\n"
        f"{harness} {' '.join(q(a) for a in harness_argv)} "
        f"> {q(str(rwdir / 'guest.stdout'))} 2> {q(str(rwdir / 'guest.stderr'))}\n"
        f"echo $? > {q(str(rwdir / 'guest.rc'))}\n"
    )
    done, boot_s, total = _boot(kernel, script, rwdir, accel, timeout)
    console = (done.stdout if done else "").splitlines()
    rc_file = rwdir / "guest.rc"
    (rwdir / "console.log").write_text("\n".join(console) + "\n")
    if done is None or not rc_file.exists():
        what = "did not finish" if done is None else "exited before the command finished"
        tail = " | ".join(line.strip() for line in console[-3:]) or "no console output"
        raise VMError(
            f"guest {kernel.release} ({accel}) {what} after {total:.0f}s; console: {tail}",
            "see the console in " + str(rwdir / "console.log") + "; raise --timeout under TCG",
        )
    result = GuestRun(
        series,
        kernel.release,
        accel,
        boot_s,
        total,
        int(rc_file.read_text().strip() or -1),
        (rwdir / "guest.stdout").read_text(),
        (rwdir / "guest.stderr").read_text(),
        console[-20:],
    )
    (rwdir / "vm.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def strip_option(argv: list[str], name: str) -> list[str]:
    """Drop `--name VALUE` / `--name=VALUE` from an argv."""
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == name:
            skip = True
        elif not word.startswith(name + "="):
            out.append(word)
    return out


def run_in_vm(lane: str, command: str, argv: list[str], out: Path | None) -> int:
    """Re-run `harness COMMAND ARGV` in the lane's guest; results land in `out` on the host."""
    from harness.report.rundir import new_run_dir

    series = lane_series(lane)
    out = (out or new_run_dir(f"{command}-vm{series}")).resolve()
    inner = [command, *strip_option(strip_option(argv, "--lane"), "--out"), "--out", str(out)]
    if command == "crosscheck":
        from harness.compare.crosscheck import prebuild_twins

        root = prebuild_twins(argv, out / "prebuilt")
        inner = [*strip_option(inner, "--prebuilt"), "--prebuilt", str(root)]
    guest = run_guest(series, inner, out)
    print(f"lane: vm {guest.release} ({guest.accel}, booted in {guest.boot_s or 0:.1f}s)")
    sys.stdout.write(guest.stdout)
    sys.stderr.write(guest.stderr)
    if command == "run" and not os.environ.get("KTRACE_NO_REPORT"):
        _report(out)
    return guest.returncode or 0


def _report(out: Path) -> None:
    try:
        from harness.report.summary import write_report

        write_report(out)
    except (ImportError, HarnessError) as err:
        print(f"note: report not written: {err}", file=sys.stderr)

"""Guests kept up: `harness lane up vm:6.1` boots a Debian guest with sshd that outlives the
command, and every later run that names `vm:6.1` reaches it over SSH, through the same remote
code path as a real host (harness.lanes.remote), until `harness lane down vm:6.1`.

    up("6.1")          boot (virtme-ng --ssh), wait for sshd, open a shared connection
    kept("6.1")        the GuestLane of the guest that is up, None if none is
    down("6.1")        stop it: the shared connection, qemu and its group, the lane directory
    listing()          every guest recorded, with whether it is still alive

One directory per series under `cache_home()/lanes/up/vm-SERIES/` holds all of it: `state.json`
(pids, port, boot time), the guest's console, the ssh config and known_hosts the lane uses, the
guest's boot script and its read-write directory. The state is written as soon as the guest is
started, so a guest whose `lane up` was killed mid-boot is still found by `lane down` and by
`doctor`; while `lane up` waits for the boot, its watchdog also kills the guest if it dies.

sshd is virtme-ng's (`--ssh PORT --ssh-tcp`: qemu forwards 127.0.0.1:PORT to the guest's port
22; virtme-ng keys it with the host keys and client key under ~/.cache/virtme-ng/.ssh). The lane
checks the guest's host key (known_hosts written from virtme-ng's host keys, never "accept
anything"), logs in with virtme-ng's client key, and keeps one master connection (ControlMaster,
started by `lane up`) so that each run opens a session in well under a second instead of a new
login, which takes 5-15 s of emulated crypto under TCG. The guest's boot script gives root a
plain /bin/sh login shell inside the guest (its /etc is a guest-only overlay): the host user's
~/.bashrc (pyenv and the like) took 20-50 s of every login under TCG.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.host.lifetime import watchdog
from harness.lanes.debian import fetch
from harness.lanes.remote import RemoteError, SSHLane, payload
from harness.lanes.vm import VM_MIN_TIMEOUT, VMError, _env, _vng, accel_choice
from harness.paths import cache_home, locked
from harness.progress import Progress, silent
from harness.workloads.native import native_argv

if TYPE_CHECKING:
    from harness.compare.gather import Gathered, GatherRequest
    from harness.host.runner import RunRequest, RunResult
    from harness.lanes.base import ProgramSource, Ticks

UP_TIMEOUT = float(os.environ.get("KTRACE_VM_BOOT_TIMEOUT", "900"))
STOP_WAIT = 15.0  # seconds for qemu's group to end on SIGTERM before SIGKILL
CONNECT_TIMEOUT = 30.0  # seconds for one ssh login to the guest to get its banner


class NotUp(VMError):
    """The guest a lane names is not up (any more)."""


def up_root() -> Path:
    return cache_home() / "lanes" / "up"


def lane_dir(series: str) -> Path:
    return up_root() / f"vm-{series}"


def alias(series: str) -> str:
    """The guest's name in the lane's ssh config (and its qemu -name, for ps)."""
    return f"ktrace-vm-{series}"


# --- state -------------------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat): with the
    pid, it names one process, so a recycled pid is never taken for the guest."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2:].split()[19])


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def read_state(series: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((lane_dir(series) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return data


def _write_state(series: str, state: dict[str, Any]) -> None:
    path = lane_dir(series) / "state.json"
    tmp = path.with_name(f"state.{os.getpid()}.tmp")
    # Only its owner reads it: it holds the resident agent's secret.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(json.dumps(state, indent=1))
    tmp.replace(path)


def alive(state: dict[str, Any]) -> bool:
    """The guest's virtme-ng process (leader of its group) is the one recorded, and running."""
    pid = int(state.get("pid") or 0)
    return pid > 0 and _start_ticks(pid) == state.get("start_ticks")


def condition(state: dict[str, Any]) -> str:
    """'up', 'booting' (its `lane up` still waits), or 'gone' (recorded, no longer running)."""
    if not alive(state):
        return "gone"
    return str(state.get("state") or "booting")


def listing() -> list[dict[str, Any]]:
    """Every guest recorded under the cache, with its condition."""
    out = []
    root = up_root()
    for d in sorted(root.glob("vm-*")) if root.is_dir() else []:
        state = read_state(d.name.removeprefix("vm-"))
        if state is not None:
            out.append({**state, "condition": condition(state), "dir": str(d)})
    return out


# --- ssh ------------------------------------------------------------------------------------------


def virtme_ssh_dir() -> Path:
    """Where virtme-ng keeps the guest's host keys and the client key (its utils.SSH_DIR)."""
    with contextlib.suppress(ImportError):
        from virtme_ng.utils import SSH_DIR  # type: ignore[import-untyped]

        return Path(SSH_DIR)
    return Path.home() / ".cache" / "virtme-ng" / ".ssh"


def _ssh_files(series: str, port: int) -> Path:
    """The lane's ssh config (and known_hosts from the guest's host keys); returns the config."""
    d = lane_dir(series)
    keys = virtme_ssh_dir()
    name = alias(series)
    lines = [f"{name} {p.read_text().split()[0]} {p.read_text().split()[1]}"
             for p in sorted((keys / "etc" / "ssh").glob("ssh_host_*_key.pub"))]
    (d / "known_hosts").write_text("".join(f"{ln}\n" for ln in lines))
    config = d / "ssh_config"
    config.write_text(
        f"# written by `harness lane up vm:{series}`: the guest's sshd, forwarded by qemu\n"
        f"Host {name}\n"
        f"  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User root\n"
        f"  IdentityFile {keys / 'id_virtme'}\n"
        f"  IdentitiesOnly yes\n"
        f"  HostKeyAlias {name}\n"
        f"  UserKnownHostsFile {d / 'known_hosts'}\n"
        f"  StrictHostKeyChecking yes\n"
        f"  ControlPath {d / 'cm'}\n"
        f"  ControlMaster no\n"
        f"  LogLevel ERROR\n"
    )
    return config


def _ssh(series: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(lane_dir(series) / "ssh_config"), "-o", "BatchMode=yes", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )


def _start_master(series: str, timeout: float) -> int | None:
    """The shared connection (its own session, so it outlives this command); its pid."""
    name = alias(series)
    deadline = time.monotonic() + timeout
    while True:
        # ConnectTimeout bounds the banner too: a guest whose network is down holds the
        # forwarded connection open without a word, and one attempt took the whole budget.
        done = _ssh(series, "-o", "ControlMaster=yes", "-o", "ControlPersist=yes",
                    "-o", f"ConnectTimeout={CONNECT_TIMEOUT:.0f}", "-f", "-N", name,
                    timeout=max(10.0, min(deadline - time.monotonic(), CONNECT_TIMEOUT * 4)))
        # The guest says it is ready once its boot script runs; sshd, started beside it, may
        # not listen yet on a loaded machine (qemu's forward then resets the connection).
        early = re.search(r"kex_exchange_identification|Connection (reset|refused|closed)|"
                          r"timed out", done.stderr)
        if done.returncode == 0 or not early or time.monotonic() > deadline:
            break
        time.sleep(2)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise VMError(f"cannot log into guest vm:{series} over ssh ({last}); console: "
                      f"{console_tail(series)}",
                      "see its console in `harness lane status`, then `harness lane down`")
    check = _ssh(series, "-O", "check", name, timeout=10)
    m = re.search(r"pid=(\d+)", check.stderr + check.stdout)
    return int(m.group(1)) if m else None


def _start_resident(series: str, state: dict[str, Any]) -> dict[str, Any]:
    """The guest's resident agent (harness.lanes.agent.resident), started through an ordinary
    session; what the lane needs to reach it (state.json is root's only), or why there is
    none (runs then start an agent each)."""
    lane = GuestLane(series, {**state, "state": "up"})
    lane._still_up = lambda: True  # type: ignore[method-assign]  # not yet recorded as up
    token = secrets.token_hex(16)
    try:
        answer = lane.request({"op": "resident", "token": token})
        return {"port": answer["port"], "pid": answer["pid"], "token": token,
                "sha": payload().sha, "symbols": answer.get("symbols", "")}
    except HarnessError as err:
        return {"failed": str(err)}
    finally:
        lane.close()


# --- up and down ------------------------------------------------------------

KEEP_SCRIPT = """#!/bin/sh
# The guest side of `harness lane up`: root logs in with a plain shell (the guest's /etc is
# an overlay only it sees; the host user's ~/.bashrc costs 20-50 s of each login under TCG),
# then the guest says it is ready and stays up until `harness lane down` stops qemu, or until
# its lane directory is gone (the guest sees the host's files): a guest whose record was
# removed by anything else powers itself off instead of running on unseen.
sed -i 's|^\\(root:.*:\\)[^:]*$|\\1/bin/sh|' /etc/passwd
# virtme-ng's init reads the NIC's name while udev, started beside it, may rename the NIC
# ("enp0s10: renamed from eth0" on the console): its DHCP then runs on a name that is gone, the
# guest has no address, and ssh through qemu's forward hangs at the banner. sshd is already
# running when this script starts, and so is DHCP done: a NIC with no address now gets the one
# qemu's user network forwards to, and a note that `lane up` turns into a warning.
for d in /sys/bus/virtio/drivers/virtio_net/*/net/*; do
  [ -e "$d" ] || continue
  nic=${{d##*/}}
{drop}  if ! ip -4 -o addr show dev "$nic" | grep -q inet; then
    ip link set dev "$nic" up && ip addr add {address} dev "$nic" && \\
      ip route replace default via {gateway} dev "$nic"
    echo "the guest's NIC $nic had no address (virtme-ng's DHCP lost a race with udev's \\
renaming of it): gave it {address} by hand (exit $?)" > {repaired}
    echo "<4>ktrace lane: $(cat {repaired})" > /dev/kmsg
  fi
  break
done
: > {ready}
while [ -e {keep} ]; do sleep 10; done
"""
# qemu's user network (slirp) hands out 10.0.2.15 first and forwards the ssh port there.
GUEST_ADDRESS, GUEST_GATEWAY = "10.0.2.15/24", "10.0.2.2"
# Tests only: drop the address virtme-ng's DHCP gave, as when it lost the race with udev.
DROP_ADDRESS = '  ip addr flush dev "$nic"\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def up(series: str, progress: Progress = silent, timeout: float = UP_TIMEOUT) -> dict[str, Any]:
    """Boot guest vm:SERIES and leave it running; returns its state (the one already up when
    there is one). A boot that fails or is interrupted leaves nothing behind."""
    with locked(up_root() / f"vm-{series}.lock"):  # one up/down of a series at a time
        state = read_state(series)
        if state is not None and condition(state) == "up":
            return state
        if state is not None:  # gone, or a `lane up` that died while booting it
            _stop(series, state)
        progress(f"fetching kernel {series}")
        kernel = fetch(series, progress)
        accel = accel_choice(kernel, progress)
        d = lane_dir(series)
        shutil.rmtree(d, ignore_errors=True)
        for sub in ("rw", "host-tmp"):
            (d / sub).mkdir(parents=True)
        keep = d / "keep.sh"
        drop = DROP_ADDRESS if os.environ.get("KTRACE_VM_DROP_ADDRESS") == "1" else ""
        keep.write_text(KEEP_SCRIPT.format(
            ready=shlex.quote(str(d / "rw" / "ready")), keep=shlex.quote(str(keep)),
            repaired=shlex.quote(str(d / "rw" / "repaired")), drop=drop,
            address=GUEST_ADDRESS, gateway=GUEST_GATEWAY))
        keep.chmod(0o755)
        port = _free_port()
        argv = [
            _vng(), "--run", str(kernel.vmlinuz), "--memory", "2G", "--cpus", "2",
            *(["--disable-kvm"] if accel == "tcg" else []),
            "--name", alias(series), "--ssh", str(port), "--ssh-tcp",
            "--rwdir", str(d / "rw"), "--verbose", "--exec", str(keep),
        ]  # fmt: skip
        t0 = time.monotonic()
        with open(d / "console.log", "wb") as console:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                env=_env(d / "host-tmp"), cwd=str(d), start_new_session=True,
            )
        # Until the guest is up, it dies with this command (the watchdog kills its group);
        # the state names it from now on, for `lane down` and `doctor`.
        dog = watchdog()
        dog.guard_group(proc.pid)
        state = {
            "lane": f"vm:{series}", "series": series, "release": kernel.release, "accel": accel,
            "pid": proc.pid, "pgid": proc.pid, "start_ticks": _start_ticks(proc.pid),
            "port": port, "state": "booting", "by_pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "dir": str(d), "ssh_config": str(d / "ssh_config"), "host": alias(series),
        }
        _write_state(series, state)
        try:
            _wait_ready(series, proc, t0, timeout, progress, f"{kernel.release} ({accel})")
            repaired = d / "rw" / "repaired"
            if repaired.exists():
                state["warnings"] = [repaired.read_text().strip()]
            progress(f"logging into guest {kernel.release}")
            _ssh_files(series, port)
            left = max(120.0, timeout - (time.monotonic() - t0))
            state["master_pid"] = _start_master(series, left)
            state["master_ticks"] = _start_ticks(state["master_pid"] or 0)
            progress(f"starting the resident agent in guest {kernel.release}")
            state["agent"] = _start_resident(series, state)
            symbols = state["agent"].get("symbols")
            if symbols and symbols != "copies":  # see harness.lanes.agent.SymbolCopies
                state.setdefault("warnings", []).append(
                    f"the resident agent could not keep the guest's /proc/kallsyms ({symbols}): "
                    "bpftrace reads it live, ~1 s more at the end of each run with a kstack")
            state["boot_s"] = round(time.monotonic() - t0, 3)
            state["state"] = "up"
            _write_state(series, state)
        except BaseException:
            with contextlib.suppress(Exception):
                _stop(series, state)
            raise
        finally:
            dog.release_group(proc.pid)
            # Not our child any more once up: whatever reaps it, its state file names it.
        progress(f"guest {kernel.release} up", state["boot_s"], None, "s")
        return state


def _wait_ready(series: str, proc: subprocess.Popen[bytes], t0: float, timeout: float,
                progress: Progress, what: str) -> None:
    ready = lane_dir(series) / "rw" / "ready"
    while not ready.exists():
        elapsed = time.monotonic() - t0
        if proc.poll() is not None or elapsed > timeout:
            why = f"exited (status {proc.returncode})" if proc.poll() is not None else (
                f"was not up within {timeout:.0f}s")
            raise VMError(f"guest {what} {why}; console: {console_tail(series)}",
                          "raise --timeout (or KTRACE_VM_BOOT_TIMEOUT) under TCG, "
                          "or see `harness doctor`")
        progress(f"booting {what}", elapsed, None, "s")
        time.sleep(0.5)


def console_tail(series: str, n: int = 3) -> str:
    try:
        text = (lane_dir(series) / "console.log").read_bytes().decode("utf-8", "replace")
    except OSError:
        return "no console output"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "no console output"


def down(series: str) -> dict[str, Any] | None:
    """Stop guest vm:SERIES (its shared connection, qemu's whole group) and remove its lane
    directory; returns the state it had, None when none was recorded."""
    with locked(up_root() / f"vm-{series}.lock"):  # one up/down of a series at a time
        state = read_state(series)
        if state is None and not lane_dir(series).exists():
            return None
        _stop(series, state or {})
        return state or {"lane": f"vm:{series}", "condition": "gone"}


def _stop(series: str, state: dict[str, Any]) -> None:
    master = int(state.get("master_pid") or 0)
    if master and _start_ticks(master) == state.get("master_ticks"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(master, signal.SIGTERM)
    if alive(state):
        pgid = int(state["pgid"])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
    shutil.rmtree(lane_dir(series), ignore_errors=True)


# --- the lane ------------------------------------------------------------


def not_up(series: str, why: str = "") -> NotUp:
    return NotUp(
        f"guest vm:{series} is not up{f' ({why})' if why else ''}",
        f"start it with `harness lane up vm:{series}`",
    )


def kept(series: str) -> GuestLane | None:
    """The lane of guest vm:SERIES when one is up; None when none is recorded. A guest that is
    recorded but booting, or gone (its qemu died without `lane down`), is one line."""
    state = read_state(series)
    if state is None:
        return None
    now = condition(state)
    if now == "up":
        return GuestLane(series, state)
    if now == "booting":
        raise VMError(f"guest vm:{series} is still booting (`harness lane up`, pid "
                      f"{state.get('by_pid')})", "wait for `harness lane up` to finish")
    raise NotUp(f"guest vm:{series} was kept up but is gone (its qemu exited)",
                f"clear it with `harness lane down vm:{series}`, then `harness lane up "
                f"vm:{series}` again")


class GuestLane(SSHLane):
    """An up guest as an SSH host: the lane's own ssh config, its shared connection, the same
    agent, requests and codec as every remote. It checks the guest is still the one that was
    up before each connection, and says so in one line when it is not."""

    min_timeout = VM_MIN_TIMEOUT  # bpftrace under TCG spends tens of seconds before it attaches
    aot_by_default = True  # its LLVM is emulated: compile here (harness.lanes.aot)

    def __init__(self, series: str, state: dict[str, Any]) -> None:
        super().__init__(alias(series), config=Path(state["ssh_config"]))
        self.name = f"vm:{series}"
        self.series = series
        self.state = state
        self.workload_ran: list[str] | None = None  # the last run's workload as it ran there
        agent = state.get("agent") or {}
        # The resident agent `lane up` started, while it runs this harness's code (another
        # checkout's harness, or this one edited since, starts an agent of its own per run).
        if agent.get("port") and agent.get("sha") == payload().sha and \
                os.environ.get("KTRACE_LANE_RESIDENT", "1") != "0":
            self.resident = (int(agent["port"]), str(agent["token"]))

    def usable(self) -> bool:
        """Still the guest that was up when this lane was made (get_lane's cache asks)."""
        return self._still_up()

    def _still_up(self) -> bool:
        now = read_state(self.series)
        return now is not None and now.get("started") == self.state.get("started") and \
            condition(now) == "up"

    def start(self, progress: Progress = silent) -> None:
        if not self._still_up():
            self.close()
            raise not_up(self.series, "`harness lane down` stopped it, or its qemu exited")
        super().start(progress)

    def request(self, req: dict[str, Any], program_for: Any = None,
                progress: Progress = silent) -> dict[str, Any]:
        try:
            return super().request(req, program_for, progress)
        except RemoteError:
            if not self._still_up():
                raise not_up(self.series, "it stopped during the request") from None
            raise

    # -- the workload: the C twin of a shipped Python one, built here (the guest shares this
    # machine's root filesystem and its libraries) --
    def _native(self, argv: Sequence[str] | None) -> tuple[list[str] | None, str]:
        given = list(argv) if argv is not None else None
        # KTRACE_NATIVE_WORKLOAD=0: the Python workload as given (benchmarks compare the two)
        wanted = os.environ.get("KTRACE_NATIVE_WORKLOAD", "1") != "0"
        ran, note = native_argv(given) if wanted else (given, "")
        self.workload_ran = ran
        return ran, note

    def run_bpftrace(self, program: ProgramSource, req: RunRequest, *,
                     progress: Progress = silent, on_progress: Ticks = None) -> RunResult:
        argv, note = self._native(req.workload)
        result = super().run_bpftrace(program, replace(req, workload=argv), progress=progress,
                                      on_progress=on_progress)
        if note:
            result.warnings.append(note)
            if result.output is not None:
                result.output.warnings.append(note)
        return result

    def gather(self, program_for: Callable[[int], str], req: GatherRequest, *,
               progress: Progress = silent) -> Gathered:
        argv, note = self._native(req.workload)
        got = super().gather(program_for, replace(req, workload=argv or []), progress=progress)
        if note:  # a lane hands the capture back parsed (a RunResult)
            got.bpftrace.warnings.append(note)
            output = getattr(got.bpftrace, "output", None)
            if output is not None:
                output.warnings.append(note)
        return got

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "name": self.name,
            "transport": "ssh (guest kept up)",
            "workload_ran": self.workload_ran,
            "series": self.series,
            "accel": self.state.get("accel"),
            "up_since": self.state.get("started"),
            "boot_s": self.state.get("boot_s"),
            "boot_repairs": self.state.get("warnings", []),
        }

"""The machine side of every remote lane: runs bpftrace, the twin loader and the workload on the
kernel under test and hands their raw capture back; nothing else happens there.

An SSH host and a VM guest (reached over SSH too) run the same agent. harness.lanes.remote
starts it over the connection (`python3 -I -S -c BOOTSTRAP`, the code copied once into the
remote's cache) and talks to it on stdin/stdout, one JSON object per line through
harness.lanes.wire:

    agent -> harness   {"op": "hello", ...kernel facts}        once, at start
    harness -> agent   {"op": "run"|"gather"|"bench"|..., "id": N, ...}
    agent -> harness   {"op": "ask", "id": N, "pid": P}        the program, once its pid is known
    harness -> agent   {"op": "program", "id": N, "text": T}
    agent -> harness   {"op": "done", "id": N, "ok": true, ...} or "ok": false with the error
    harness -> agent   {"op": "beat"} every few seconds, {"op": "stop"} on Ctrl-C/SIGTERM

Requests and answers are the typed records of harness.lanes.protocol, served by its machine
side. Codegen, parsing, frames and reports stay with the harness: what goes back is the raw
capture (runner.Capture); the agent imports no parser and needs only the standard library and
pexpect, which travel with its code.

The watchdog: whatever ends the harness (Ctrl-C, SIGTERM, SIGKILL, a crash) or its connection
(a dropped link: no heartbeat for `beat_timeout` seconds; a closed one: end of stdin), the agent
exits at once, and everything it started goes with it: bpftrace and the loader by PDEATHSIG,
the workload's process group by its guard (harness.host.lifetime). A `stop` is the gentle path:
the running request stops as a Ctrl-C stops a local run, and its partial capture comes back.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hmac
import importlib
import json
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from harness.compare.gather import Gathered, GatherRequest, gather
from harness.host import workload
from harness.host.capabilities import (
    BTF,
    kprobes_built_in,
    lockdown_mode,
    missing_bpf_privileges,
    mount_tracefs,
    tracefs_root,
)
from harness.host.runner import RunRequest
from harness.lanes import protocol, wire
from harness.lanes.aot import write_wrapper
from harness.lanes.protocol import BenchRequest

BEAT_TIMEOUT = 30.0  # seconds without a heartbeat after which the harness counts as gone
PYTHON = "@PYTHON@"  # in argv words from the harness: this machine's python
PACKAGE = "@HARNESS@"  # ... and the harness package copied here


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _tool(name: str) -> dict[str, Any] | None:
    """Where a tool is and its file identity (a cheap stand-in for its version, which the
    harness caches: `bpftrace --version` loads LLVM, seconds under TCG)."""
    path = shutil.which(name)
    if path is None:
        return None
    st = os.stat(path)
    return {"path": path, "size": st.st_size, "mtime": int(st.st_mtime)}


def kernel_facts() -> dict[str, Any]:
    """What the harness needs to know of this machine before it writes a program."""
    mounted = mount_tracefs() if os.geteuid() == 0 else []
    uname = os.uname()
    return {
        "op": "hello",
        "kernel": uname.release,
        "kernel_version": uname.version,
        "arch": platform.machine(),
        "hostname": uname.nodename,
        "boot_id": _boot_id(),
        "root": os.geteuid() == 0,
        "bpf_privileges": missing_bpf_privileges(),
        "btf": BTF.exists(),
        "tracefs": tracefs_root(),
        "kprobes": kprobes_built_in(),
        "lockdown": lockdown_mode(),
        "mounted": mounted,
        "bpftrace": _tool("bpftrace"),
        "aotrt": _tool("bpftrace-aotrt"),
        "python": sys.version.split()[0],
        "pid": os.getpid(),
        "uptime_s": float(Path("/proc/uptime").read_text().split()[0]),
    }


class Agent:
    """One session with the harness: a reader thread takes every message as it comes (so a
    heartbeat or a stop is seen while a run goes on), the main thread serves requests."""

    def __init__(self, inp: IO[bytes], out: IO[bytes], beat_timeout: float = BEAT_TIMEOUT) -> None:
        self.inp, self.out = inp, out
        self.beat_timeout = beat_timeout
        self.write_lock = threading.Lock()
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.programs: queue.Queue[dict[str, Any]] = queue.Queue()
        self.last_beat = time.monotonic()
        self.busy = False
        self.stop_signum = int(signal.SIGINT)
        self.workdir = Path(tempfile.mkdtemp(prefix="ktrace-agent-"))
        self.package = Path(__file__).resolve().parent.parent

    # -- the connection --
    def send(self, message: dict[str, Any]) -> None:
        with self.write_lock:
            try:
                wire.write_message(self.out, message)
            except (BrokenPipeError, ValueError, OSError):
                self.abandon("the harness's connection closed")

    def listen(self) -> None:
        """Reader thread: route every message; the end of stdin means the harness is gone."""
        while True:
            try:
                msg = wire.read_message(self.inp)
            except (OSError, ValueError):
                msg = None
            if msg is None:
                self.abandon("the harness's connection closed")
                return
            op = msg.get("op")
            self.last_beat = time.monotonic()
            if op == "beat":
                continue
            if op == "program":
                self.programs.put(msg)
            elif op == "stop":
                self.stop_signum = int(msg.get("signum") or signal.SIGINT)
                if self.busy:
                    os.kill(os.getpid(), signal.SIGINT)  # the run stops as on a local Ctrl-C
            else:
                self.requests.put(msg)

    def watch(self) -> None:
        """Watchdog thread: a harness that stopped beating is gone (a dropped link, a stopped
        or killed harness behind a connection that was not closed)."""
        while True:
            time.sleep(1.0)
            silent = time.monotonic() - self.last_beat
            if silent > self.beat_timeout:
                self.abandon(f"no heartbeat from the harness for {silent:.0f}s")

    def abandon(self, why: str) -> None:
        """Leave now: everything this agent started dies with it (PDEATHSIG, group guards)."""
        with contextlib.suppress(OSError, ValueError):
            print(f"ktrace agent: {why}; stopping everything it started", file=sys.stderr,
                  flush=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        os._exit(3)

    def _interrupt(self, signum: int, frame: object) -> None:
        stop = KeyboardInterrupt()
        stop.signum = self.stop_signum  # type: ignore[attr-defined]
        raise stop

    # -- requests --
    def serve(self) -> None:
        signal.signal(signal.SIGINT, self._interrupt)
        threading.Thread(target=self.listen, name="agent-listen", daemon=True).start()
        threading.Thread(target=self.watch, name="agent-watchdog", daemon=True).start()
        self.send(kernel_facts())
        while True:
            try:
                req = self.requests.get()
                if req.get("op") == "bye":
                    break
                self.busy = True
                try:
                    answer = {"ok": True, **self.handle(req)}
                except BaseException as err:  # every failure goes back to the harness
                    answer = {"ok": False, "error": wire.error_dict(err)}
                finally:
                    self.busy = False
                self.send({"op": "done", "id": req.get("id"), **answer})
            except KeyboardInterrupt:  # a stop that came as the request ended
                self.busy = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def ask(self, n: int, pid: int | None) -> str:
        """The program text for this pid, from the harness (codegen stays there); compiled
        ahead of time too, when the harness could (kept where the run's wrapper looks)."""
        self.send({"op": "ask", "id": n, "pid": pid})
        while True:
            msg = self.programs.get()
            if msg.get("id") == n:
                self.keep_compiled(n, msg.get("aot"))
                return str(msg["text"])

    def compiled_path(self, n: int) -> Path:
        return self.workdir / f"run-{n}.aot"

    def keep_compiled(self, n: int, data: str | None) -> None:
        if data:
            self.compiled_path(n).write_bytes(base64.b64decode(data))

    def local(self, word: str) -> str:
        """An argv word from the harness with its placeholders made local."""
        if word == PYTHON:
            return sys.executable
        return word.replace(PACKAGE, str(self.package))

    def argv(self, words: list[str] | None) -> list[str] | None:
        if words is None:
            return None
        local = [self.local(w) for w in words]
        if words[0] == PYTHON and _shipped_workload(words[1:]):
            local.insert(1, "-S")  # see _shipped_workload
        return local

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op, n = req["op"], int(req.get("id") or 0)
        if op == "version":
            return {"text": _version_line(req["tool"])}
        if op == "kallsyms":
            return {"text": Path("/proc/kallsyms").read_text()}
        if op == "read":
            try:
                return {"text": Path(req["path"]).read_text()}
            except OSError:
                return {"text": None}
        if op == "btf":
            return {"data": base64.b64encode(BTF.read_bytes()).decode()}
        if op == "put":
            path = self.workdir / req["name"]
            path.write_bytes(base64.b64decode(req["data"]))
            path.chmod(0o755 if req.get("executable") else 0o644)
            return {"path": str(path)}
        if op == "resident":
            return start_resident(str(req["token"]), self.package.parent)
        if op == "run":
            return wire.record(self.run(n, wire.decode(RunRequest, req)))
        if op == "gather":
            return wire.record(self.gather(n, wire.decode(GatherRequest, req)))
        if op == "bench":
            return wire.record(self.bench(n, wire.decode(BenchRequest, req)))
        raise ValueError(f"unknown request op {op!r}")

    def run(self, n: int, req: RunRequest) -> protocol.RunAnswer:
        bpftrace = None
        if req.aot:  # a program compiled by the harness runs with bpftrace-aotrt
            self.keep_compiled(n, req.compiled)
            bpftrace = write_wrapper(str(self.workdir / f"run-{n}.sh"),
                                     str(self.compiled_path(n)), req.marker, req.bpftrace)
        try:
            capture = protocol.run(
                req.program if req.program is not None else (lambda pid: self.ask(n, pid)),
                replace(req, workload=self.argv(req.workload)),
                bpftrace=bpftrace,
            )
        finally:
            for done in (self.compiled_path(n), self.workdir / f"run-{n}.sh"):
                done.unlink(missing_ok=True)
        return protocol.RunAnswer(capture)

    def gather(self, n: int, req: GatherRequest) -> Gathered:
        return gather(lambda pid: self.ask(n, pid),
                               replace(req, workload=self.argv(req.workload) or []))

    def bench(self, n: int, req: BenchRequest) -> protocol.BenchAnswer:
        """compare.bench's rounds on this kernel, the argv words made local."""
        workload = replace(req.workload, argv=self.argv(list(req.workload.argv)) or [])
        tracers = [replace(t, template=[self.local(w) for w in t.template]) for t in req.tracers]
        return protocol.bench(replace(req, workload=workload, tracers=tracers),
                              lambda pid: self.ask(n, pid))


def _shipped_workload(args: list[str]) -> bool:
    """Whether python's arguments run one of the harness's own workloads (a file under the
    package's workloads/, or `-m harness.workloads.NAME`). They need only the standard library,
    so their Python starts without site (-S): the remote's site-packages are of no use to them,
    and under TCG reading them costs 1-2 s of every run."""
    if not args:
        return False
    if args[0].startswith(f"{PACKAGE}/workloads/") and args[0].endswith(".py"):
        return True
    return len(args) > 1 and args[0] == "-m" and args[1].startswith("harness.workloads.")


def _version_line(tool: str) -> str | None:
    path = shutil.which(tool)
    if path is None:
        return None
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=600,
                          check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else None


def _prepare() -> None:
    """What every session needs in this process: workload gates forked from here
    (harness.host.workload.ForkedGate: no Python started per run), and the code on PYTHONPATH
    (the shipped workloads may be named by module: `python3 -m harness.workloads.udp_send`)."""
    workload.FORK_GATE = True
    code = str(Path(__file__).resolve().parent.parent.parent)
    if code not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (code, os.environ.get("PYTHONPATH", "")) if p
        )


# --- the resident agent ----------------------------------------------------------------------
#
# A guest kept up runs one agent process from `harness lane up` on (`resident`), listening on
# 127.0.0.1 in the guest; a run's ssh reaches it through the shared connection (`ssh -W
# 127.0.0.1:PORT`, as ProxyJump does) instead of starting Python and importing the agent's
# modules, which takes 1.5-4 s of every run under TCG. Each connection is served by a fork of
# it, an agent session like any other: same protocol, same watchdog (the connection's end or a
# silent heartbeat ends it and everything it started), its processes named by the session the
# harness sends in its first line with the secret `lane up` gave the resident (a connection
# without it is closed unanswered: other processes in the guest can reach the port too).

RESIDENT_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from harness.lanes.agent import resident; resident(sys.argv[2])"
)
RESIDENT_WARM = ("harness.host.runner", "harness.host.workload", "harness.host.capabilities",
                 "harness.lanes.aot", "harness.compare.gather", "pexpect")


# What bpftrace reads of the kernel on every start and stop, kept by the resident: under TCG the
# kernel takes ~1-1.5 s to print each of these files, every time (measured with strace -tt in a
# 6.1 guest: available_filter_functions at each start, 0.17 reads it before loading anything;
# /proc/kallsyms at each stop, to name a kstack's frames). Neither changes while the kernel's
# modules do not, so the resident copies both once (at `lane up`) into its directory and runs
# everything it starts against the copies: available_filter_functions through bpftrace's
# BPFTRACE_AVAILABLE_FUNCTIONS_TEST (the path it reads instead), /proc/kallsyms by a bind mount
# in the resident's own mount namespace (nothing else in the guest sees it). When /proc/modules
# differs from what it was at the copy, both are copied again before the next session.
MS_REC, MS_PRIVATE, MS_BIND = 0x4000, 0x40000, 0x1000
CLONE_NEWNS = 0x00020000


class SymbolCopies:
    """The resident's copies of the kernel's symbol lists (see above); `pinned` says where
    bpftrace reads them from, or why it reads the live files."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.modules: str | None = None
        self.functions = where / "available_filter_functions"
        self.kallsyms = where / "kallsyms"
        self.live_kallsyms = "/proc/kallsyms"
        self.pinned = ""
        try:
            self._pin_kallsyms()
            self.pinned = "copies"
        except OSError as err:
            self.pinned = f"kallsyms read live: {err}"

    def _pin_kallsyms(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)

        def check(result: int, what: str) -> None:
            if result != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"{what}: {os.strerror(errno)}")

        check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
        live = self.where / "proc"  # a procfs of its own: the live kallsyms, uncovered
        live.mkdir(exist_ok=True)
        check(libc.mount(b"proc", str(live).encode(), b"proc", 0, None), "mount proc")
        self.live_kallsyms = str(live / "kallsyms")
        self.kallsyms.write_bytes(Path(self.live_kallsyms).read_bytes())
        check(libc.mount(str(self.kallsyms).encode(), b"/proc/kallsyms", None, MS_BIND, None),
              "mount --bind over /proc/kallsyms")

    def refresh(self) -> None:
        """Copy the lists again when the modules changed since the last copy (or never)."""
        try:
            modules = Path("/proc/modules").read_text()
        except OSError:  # a kernel built without modules
            modules = ""
        if modules == self.modules:
            return
        root = tracefs_root()
        if root:
            tmp = self.functions.with_suffix(".tmp")
            tmp.write_bytes(Path(root, "available_filter_functions").read_bytes())
            tmp.replace(self.functions)
            os.environ["BPFTRACE_AVAILABLE_FUNCTIONS_TEST"] = str(self.functions)
        if self.pinned == "copies" and self.modules is not None:
            with open(self.kallsyms, "r+b") as fh:  # in place: the bind mount holds the inode
                fh.write(Path(self.live_kallsyms).read_bytes())
                fh.truncate()
        self.modules = modules


def start_resident(token: str, code: Path, wait: float = 120.0) -> dict[str, Any]:
    """Start the resident agent (in a session of its own, so it outlives this one) with the
    secret `token`; its pid and port once it listens."""
    where = Path(tempfile.mkdtemp(prefix="ktrace-resident-"))
    port_file = where / "port"
    log = open(where / "log", "ab")  # noqa: SIM115 (the resident keeps it)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", RESIDENT_BOOT, str(code), str(port_file)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        close_fds=True, env={**os.environ, "KTRACE_RESIDENT_TOKEN": token},
    )
    log.close()
    deadline = time.monotonic() + wait
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the resident agent did not start (status {proc.poll()}; see "
                               f"{where / 'log'})")
        time.sleep(0.05)
    symbols = where / "symbols"
    return {"pid": proc.pid, "port": int(port_file.read_text()),
            "symbols": symbols.read_text() if symbols.exists() else ""}


def resident(port_file: str) -> None:
    """Listen on a free port of 127.0.0.1 (written to `port_file` once listening); serve each
    connection that names the secret in a fork (the modules a run needs imported once, here)."""
    token = os.environ.pop("KTRACE_RESIDENT_TOKEN", "")
    _prepare()
    for name in RESIDENT_WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    copies = SymbolCopies(Path(port_file).parent)
    try:
        copies.refresh()
    except OSError as err:  # bpftrace reads the live files (said by `lane up`)
        copies.pinned = f"not copied: {err}"
        os.environ.pop("BPFTRACE_AVAILABLE_FUNCTIONS_TEST", None)
    Path(port_file).with_name("symbols").write_text(copies.pinned)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    tmp = Path(f"{port_file}.tmp")
    tmp.write_text(str(server.getsockname()[1]))
    tmp.rename(port_file)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks reaped by the kernel
    while True:
        conn, _ = server.accept()
        with contextlib.suppress(OSError):
            copies.refresh()
        if os.fork() != 0:
            conn.close()
            continue
        # The session's process: an agent like one started by ssh, on the connection.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own children are waited for
        server.close()
        inp, out = conn.makefile("rb"), conn.makefile("wb")  # buffered: whole writes
        try:
            conn.settimeout(30)
            first = json.loads(inp.readline(4096) or b"{}")
            conn.settimeout(None)
            if not token or not hmac.compare_digest(str(first.get("token", "")), token):
                os._exit(1)
            if first.get("session"):
                os.environ["KTRACE_LANE_SESSION"] = str(first["session"])
            Agent(inp, out, float(first.get("beat") or BEAT_TIMEOUT)).serve()
        except (OSError, ValueError):
            pass
        finally:
            os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve one session on stdin/stdout. Protocol messages get a private copy of stdout;
    fd 1 becomes stderr, so nothing else printed here can corrupt the stream."""
    args = sys.argv[1:] if argv is None else argv
    beat_timeout = float(args[0]) if args else BEAT_TIMEOUT
    if len(args) > 1:  # everything started here carries the session's name
        os.environ["KTRACE_LANE_SESSION"] = args[1]
    _prepare()
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    Agent(inp, out, beat_timeout).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Remote lanes: a kernel on another machine, reached over SSH, where only the agent runs.

    get_lane("ssh:lab-box")          the user's own ssh config decides how (keys, ProxyJump...)
    get_lane("ssh:root@10.0.0.7:2222")

One code path serves every remote: an SSH host, and a VM guest kept up with sshd
(harness.lanes.vm). The harness starts harness.lanes.agent over the connection, ships the
agent's code once (a tarball of the harness package and pexpect, cached on the remote by its
hash), and then sends one request per run; codegen, the twin's build, parsing, frames and
reports stay here. What comes back is the raw capture (harness.lanes.wire).

Nothing is left behind remotely: the agent stops everything it started when the connection
closes or its heartbeat stops (see harness.lanes.agent); here, the ssh client dies with the
harness (PDEATHSIG and a group guard), which closes the connection. Ctrl-C and SIGTERM take
the gentle path: `stop` goes to the agent and the partial capture comes back.

ssh runs with BatchMode (no password prompt: keys and agents only; no password is stored) and
the user's host key checking; its failures become one line naming the cause and the fix.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import hashlib
import io
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pexpect
import ptyprocess

from harness.errors import HarnessError
from harness.host.bpftrace_versions import SYSTEM, Bpftrace
from harness.host.capabilities import capabilities
from harness.host.lifetime import reap, spawn
from harness.host.runner import Interrupted
from harness.host.symbols import Kallsyms
from harness.lanes import wire
from harness.lanes.agent import PACKAGE, PYTHON
from harness.lanes.aot import LITTLE_ENDIAN_ARCHES, format_files
from harness.lanes.aot_run import AotRun
from harness.lanes.base import ProgramSource
from harness.lanes.btf import Btf, Field
from harness.lanes.elsewhere import Asked, ElsewhereLane, capabilities_of
from harness.paths import PACKAGE as PACKAGE_DIR
from harness.paths import cache_home
from harness.progress import Progress, silent
from harness.spec.plan import Programs

if TYPE_CHECKING:
    from harness.host.capabilities import Capabilities
    from harness.host.runner import RunRequest, RunResult

BEAT_S = 2.0  # heartbeat period; the agent gives up after KTRACE_LANE_BEAT_TIMEOUT without one
REMOTE_MIN_TIMEOUT = 300.0  # a TCG guest's bpftrace spends tens of seconds before it attaches
STOP_WAIT = 120.0  # after a stop, how long the agent may take to send the partial capture


class RemoteError(HarnessError):
    """A remote lane could not be reached, logged into, or used."""


# --- the agent's code, as it travels ------------------------------------------------------------


def _payload_files() -> list[tuple[str, Path]]:
    """(archive name, file) for the agent's code: the harness package (Python and the
    workloads' C sources) and pexpect with ptyprocess, its one dependency."""
    files: list[tuple[str, Path]] = []
    for root in (PACKAGE_DIR, Path(pexpect.__file__).parent, Path(ptyprocess.__file__).parent):
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root.parent)
            if "__pycache__" in rel.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (path.suffix == ".c" and path.parent.name == "workloads"):
                files.append((str(rel), path))
    return files


class Payload:
    """The agent's code as a deterministic tarball and its hash (the remote cache's key). The
    hash is all a run that reaches a resident agent needs: the tarball (gzip, 30-60% of the
    cost) is made on first use of `data`."""

    def __init__(self) -> None:
        self.files = [(name, path.read_bytes()) for name, path in _payload_files()]
        digest = hashlib.sha256()
        for name, data in self.files:
            digest.update(name.encode() + b"\0" + data + b"\0")
        self.sha = digest.hexdigest()[:16]

    @functools.cached_property
    def data(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
            for name, data in self.files:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


_PAYLOAD: list[Payload] = []


def payload() -> Payload:
    if not _PAYLOAD:
        _PAYLOAD.append(Payload())
    return _PAYLOAD[0]


# Runs on the remote under `python3 -I -S`: find the agent's code in the cache (or receive and
# unpack it), then serve. Old pythons get one clear line instead of a syntax error.
BOOTSTRAP = r"""
import os, sys
sha, size, beat, session = %(sha)r, %(size)d, %(beat)r, %(session)r
def fatal(cause, fix):
    import json
    sys.stdout.write(json.dumps({"op": "fatal", "cause": cause, "fix": fix}) + "\n")
    sys.exit(0)
if sys.version_info < (3, 10):
    fatal("python %%s on this host is too old for the ktrace agent" %% sys.version.split()[0],
          "install python3 3.10 or newer there")
homes = [os.path.join(os.path.expanduser("~"), ".cache", "ktrace-harness", "agent"),
         "/tmp/ktrace-harness-agent-%%d" %% os.getuid()]
found = [os.path.join(b, sha) for b in homes if os.path.isfile(os.path.join(b, sha, "ok"))]
if found:
    code = found[0]
else:
    sys.stdout.write('{"op": "send"}\n')
    sys.stdout.flush()
    data = sys.stdin.buffer.read(size)
    import io, shutil, tarfile, tempfile
    code = None
    for base in homes:
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
            if os.stat(base).st_uid != os.getuid():
                continue
            tmp = tempfile.mkdtemp(dir=base)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, filter="data")
                else:
                    tar.extractall(tmp)
            open(os.path.join(tmp, "ok"), "w").close()
            try:
                os.rename(tmp, os.path.join(base, sha))
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
            code = os.path.join(base, sha)
            break
        except OSError:
            continue
    if code is None:
        fatal("cannot store the ktrace agent's code on this host", "make ~/.cache or /tmp writable")
sys.path.insert(0, code)
from harness.lanes.agent import main
sys.exit(main([beat, session]))
"""


def session_tag() -> str:
    """A name for one agent session, exported to everything it starts (KTRACE_LANE_SESSION):
    this machine, this process, and a nonce, so the remote's processes can be told apart."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remote_command(session: str, beat_timeout: float | None = None) -> str:
    """The shell command that starts the agent on the remote (ssh hands it to the login shell)."""
    beat = beat_timeout or float(os.environ.get("KTRACE_LANE_BEAT_TIMEOUT", "30"))
    code = BOOTSTRAP % {"sha": payload().sha, "size": len(payload().data), "beat": str(beat),
                        "session": session}
    return f"exec python3 -I -S -c {shlex.quote(code)}"


# --- one session with an agent -------------------------------------------------------------------


class Connection:
    """One agent session over a command's stdin/stdout (`ssh HOST -- CMD`): the agent's messages
    are read in a thread, its stderr is kept for the error messages, a heartbeat thread proves
    the harness alive. Requests go one at a time."""

    def __init__(self, argv: Sequence[str], host: str,
                 greeting: dict[str, Any] | None = None) -> None:
        self.argv = list(argv)
        self.host = host
        self.greeting = greeting  # the first line, for an agent already running (resident)
        self.proc: subprocess.Popen[bytes] | None = None
        self.incoming: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stderr = bytearray()
        self.write_lock = threading.Lock()
        self.hello: dict[str, Any] = {}
        self.closed = threading.Event()
        self._n = 0
        self.in_flight = False  # a request is waiting for its answer
        self.interrupted: int | None = None  # interrupt(): a signal from another thread
        # (op, seconds from send to answer) of each request: where a run's time went over
        # the link (run.json's lane.calls; scripts/bench_lane_up.py reads it).
        self.timeline: collections.deque[tuple[str, float]] = collections.deque(maxlen=64)

    def open(self) -> dict[str, Any]:
        """Start the command, ship the agent's code if the remote asks, return its hello."""
        # Its own session: a Ctrl-C at the terminal reaches the harness, which stops the remote
        # run gently, not ssh, which would cut the connection first. The watchdog kills its
        # group if the harness dies: a ProxyCommand child goes with ssh.
        self.proc = spawn(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        threading.Thread(target=self._read, name=f"lane-{self.host}", daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"lane-{self.host}-err",
                         daemon=True).start()
        if self.greeting is not None:
            with contextlib.suppress(OSError, ValueError):
                self.send(self.greeting)
        msg = self._next(None)
        if msg is not None and msg.get("op") == "send":
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(payload().data)
                self.proc.stdin.flush()
            except OSError:
                pass
            msg = self._next(None)
        if msg is None or msg.get("op") != "hello":
            self.close()
            raise self._failure(msg)
        self.hello = msg
        threading.Thread(target=self._beat, name=f"lane-{self.host}-beat", daemon=True).start()
        return msg

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout
        while True:
            try:
                msg = wire.read_message(stream)
            except (OSError, ValueError):
                msg = None
            self.incoming.put(msg)
            if msg is None:
                self.closed.set()
                return

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            self.stderr += chunk
            del self.stderr[: max(0, len(self.stderr) - 65536)]

    def _beat(self) -> None:
        while not self.closed.wait(BEAT_S):
            with contextlib.suppress(OSError, ValueError):
                self.send({"op": "beat"})

    def send(self, message: dict[str, Any]) -> None:
        proc = self.proc  # close() may clear it meanwhile (the heartbeat thread sends too)
        if proc is None or proc.stdin is None:
            raise OSError(f"the connection to {self.host} is closed")
        with self.write_lock:
            wire.write_message(proc.stdin, message)

    def _next(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message; None when the connection ended. queue.Empty at the timeout."""
        return self.incoming.get(timeout=timeout)

    def stderr_lines(self) -> list[str]:
        text = self.stderr.decode("utf-8", "replace")
        return [ln.strip() for ln in text.splitlines() if ln.strip()]

    def _failure(self, msg: dict[str, Any] | None) -> RemoteError:
        """Why the session never started, as one line: what ssh or the remote shell said."""
        if msg is not None and msg.get("op") == "fatal":
            return RemoteError(f"{self.host}: {msg['cause']}", msg.get("fix", ""))
        status = self.proc.wait(10) if self.proc is not None else None
        time.sleep(0.05)  # the stderr thread's last read
        return classify_ssh_failure(self.host, status, self.stderr_lines())

    def call(
        self,
        req: dict[str, Any],
        program_for: Callable[[int | None], Any] | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait for its answer, answering the agent's program questions.
        A Ctrl-C (or SIGTERM turned into one) while waiting becomes a `stop` to the agent, whose
        answer (the partial capture) is still awaited; a second one is only acknowledged."""
        self._n += 1
        n = req["id"] = self._n
        if self.interrupted is not None and req["op"] in ("run", "gather", "bench"):
            raise Interrupted(self.interrupted, kept=False)  # stopped before it started
        self.in_flight = True
        t0 = time.monotonic()
        try:
            try:
                self.send(req)
            except OSError:  # the remote end is gone (a broken pipe): say what ssh said
                time.sleep(0.05)  # the stderr thread's last read
                raise self._lost() from None
            return self._answer(n, program_for, on_wait)
        finally:
            self.in_flight = False
            self.timeline.append((str(req["op"]), round(time.monotonic() - t0, 4)))

    def interrupt(self, signum: int | None) -> None:
        """Stop the request in flight as a Ctrl-C in its own thread would (the partial capture
        still comes back to that thread), and refuse to start another run: for a caller whose
        Ctrl-C lands in another thread, such as a fleet's main thread. None clears it."""
        self.interrupted = signum
        if signum is not None and self.in_flight and self.proc is not None:
            with contextlib.suppress(OSError, ValueError):
                self.send({"op": "stop", "signum": signum})

    def _answer(
        self,
        n: int,
        program_for: Callable[[int | None], Any] | None,
        on_wait: Callable[[float], None] | None,
    ) -> dict[str, Any]:
        t0 = time.monotonic()
        stopped_at: float | None = None
        while True:
            if stopped_at is None and self.interrupted is not None:
                stopped_at = time.monotonic()  # interrupt() sent the stop: wait as for one
            try:
                try:
                    msg = self._next(0.5)
                except queue.Empty:
                    if stopped_at is not None and time.monotonic() - stopped_at > STOP_WAIT:
                        self.close()
                        raise RemoteError(
                            f"{self.host}: the agent did not stop within {STOP_WAIT:.0f}s",
                            "the connection was closed, which stops it",
                        ) from None
                    if on_wait is not None:
                        on_wait(time.monotonic() - t0)
                    continue
            except KeyboardInterrupt as stop:
                if stopped_at is None:
                    stopped_at = time.monotonic()
                    signum = getattr(stop, "signum", int(signal.SIGINT))
                    with contextlib.suppress(OSError, ValueError):
                        self.send({"op": "stop", "signum": signum})
                continue
            if msg is None:
                raise self._lost()
            op = msg.get("op")
            if op == "ask" and msg.get("id") == n and program_for is not None:
                answer = program_for(msg.get("pid"))
                payload_ = answer if isinstance(answer, dict) else {"text": answer}
                self.send({"op": "program", "id": n, **payload_})
            elif op == "done" and msg.get("id") == n:
                if msg.get("ok"):
                    return msg
                error = msg["error"]
                if error.get("type") == "KeyboardInterrupt":
                    interrupt = KeyboardInterrupt()
                    interrupt.signum = (error.get("attrs") or {}).get(  # type: ignore[attr-defined]
                        "signum", int(signal.SIGINT)
                    )
                    raise interrupt
                raise wire.typed_error(error)

    def _lost(self) -> RemoteError:
        tail = " | ".join(self.stderr_lines()[-2:]) or "no message"
        return RemoteError(
            f"lost the connection to {self.host} during a request ({tail})",
            "the remote agent stopped what it ran; check the link and run again",
        )

    def close(self) -> None:
        """Say bye, then make sure the command is gone (the agent stops everything with it)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None and not self.closed.is_set():
            with contextlib.suppress(OSError, ValueError), self.write_lock:
                assert proc.stdin is not None
                wire.write_message(proc.stdin, {"op": "bye"})
                proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        reap(proc)
        self.closed.set()


def classify_ssh_failure(host: str, status: int | None, stderr: list[str]) -> RemoteError:
    """ssh's exit and last words -> one line with the cause and the fix."""
    text = "\n".join(stderr)
    last = stderr[-1] if stderr else f"exit status {status}"
    if re.search(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
                 r"No \S+ host key is known", text):
        return RemoteError(
            f"{host}: its host key is unknown or changed ({last})",
            f"check the key and record it (connect once with `ssh {host}`); the harness never "
            "accepts an unknown key",
        )
    if re.search(r"Permission denied|Too many authentication failures", text):
        return RemoteError(
            f"{host} refused the login ({last})",
            "the harness logs in with keys and ssh-agent only, never a password: add your key "
            f"there (ssh-copy-id {host}) or load it into ssh-agent",
        )
    if re.search(r"Could not resolve hostname|Connection refused|Connection timed out|"
                 r"No route to host|Network is unreachable|Connection closed by|"
                 r"Connection reset|kex_exchange_identification", text):
        return RemoteError(
            f"cannot reach {host} ({last})",
            f"check that it is up and that `ssh {host} true` works",
        )
    if status == 127 or re.search(r"python3: (?:command )?not found|No such file", text):
        return RemoteError(
            f"{host} has no python3 ({last})",
            "install python3 there: the ssh lane runs a small agent (standard library only)",
        )
    return RemoteError(
        f"ssh to {host} failed (exit {status}: {last})",
        f"see what `ssh {host} true` says",
    )


# --- the lane -------------------------------------------------------------------------------------


def _bpftrace_versions_cache() -> Path:
    return cache_home() / "lanes" / "tool-versions.json"


class RemoteLane(ElsewhereLane):
    """The Lane interface over one agent session (opened on first use, kept for the process).

    Subclasses say how to reach the agent (`command`); the session, the requests, the file
    transfers and the decoding of what comes back are the same for every remote."""

    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.host = host
        self.conn: Connection | None = None
        self.facts: dict[str, Any] = {}
        self._kallsyms: Kallsyms | None = None
        self._btf: Btf | None = None
        self._puts: dict[str, str] = {}
        self.connect_s: float | None = None
        self.session = ""
        self.interrupted: int | None = None
        self.last_aot: dict[str, Any] | None = None  # how the last run was compiled (aot.py)
        self.agent = ""  # "resident" (reached one running there) or "started" (this session's)
        self.resident_failed = ""  # why a resident agent could not be reached

    def command(self, session: str) -> list[str]:
        """The argv that runs the agent's bootstrap (remote_command(session)) on the remote."""
        raise NotImplementedError

    def resident_command(self) -> list[str] | None:
        """The argv that reaches an agent already running there (None: there is none), to
        which the session's name, heartbeat and the agent's secret go in the first line."""
        return None

    resident: tuple[int, str] | None = None  # (port, secret) of a resident agent there

    # -- the session --
    def start(self, progress: Progress = silent) -> None:
        if self.conn is not None and not self.conn.closed.is_set():
            return
        progress(f"connecting to {self.host}")
        t0 = time.monotonic()
        self.session = session_tag()
        self.conn = None  # a closed one is replaced
        resident = self.resident_command()
        if resident is not None:
            beat = float(os.environ.get("KTRACE_LANE_BEAT_TIMEOUT", "30"))
            assert self.resident is not None
            self.conn = Connection(resident, self.host, {"op": "session", "beat": beat,
                                                         "session": self.session,
                                                         "token": self.resident[1]})
            self.conn.interrupted = self.interrupted
            try:
                self.facts = self.conn.open()
                self.agent = "resident"
            except RemoteError as err:  # gone (a restarted guest): start one as usual
                self.conn.close()
                self.conn, self.resident_failed = None, str(err)
        if self.conn is None:
            self.conn = Connection(self.command(self.session), self.host)
            self.conn.interrupted = self.interrupted
            self.facts = self.conn.open()
            self.agent = "started"
        self.connect_s = time.monotonic() - t0
        self._puts = {}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def interrupt(self, signum: int | None) -> None:
        """A stop signal that reached another thread: see Connection.interrupt."""
        self.interrupted = signum
        if self.conn is not None:
            self.conn.interrupt(signum)

    def call(self, op: str, req: Any, program_for: Asked, progress: Progress) -> dict[str, Any]:
        return self.request({"op": op, **wire.encode(req)}, program_for, progress)

    def request(
        self, req: dict[str, Any], program_for: Asked = None, progress: Progress = silent,
    ) -> dict[str, Any]:
        """One request as a message; its answer's message."""
        self.start(progress)
        assert self.conn is not None
        what = req["op"]

        def waiting(elapsed: float) -> None:
            if what in ("run", "gather", "bench"):
                progress(f"running on {self.host} ({what})", elapsed, None, "s")

        try:
            return self.conn.call(req, program_for, waiting)
        except RemoteError:
            self.close()  # the next call connects anew
            raise

    def put(self, path: str, executable: bool = False) -> str:
        """A local file on the remote (in the agent's session directory); sent once per
        session and content."""
        data = Path(path).read_bytes()
        key = hashlib.sha256(data).hexdigest()[:16]
        if key not in self._puts:
            answer = self.request({"op": "put", "name": f"{key}-{Path(path).name}",
                                   "executable": executable,
                                "data": base64.b64encode(data).decode()})
            self._puts[key] = str(answer["path"])
        return self._puts[key]

    def word(self, word: str) -> str:
        """A local argv word as the remote must see it: this python and this package become
        the remote's own; a file the harness built (under its cache) is sent over."""
        if word == sys.executable:
            return PYTHON
        if word.startswith(str(PACKAGE_DIR) + os.sep) or word == str(PACKAGE_DIR):
            return PACKAGE + word[len(str(PACKAGE_DIR)):]
        path = Path(word)
        if path.is_absolute() and path.is_file() and cache_home() in path.parents:
            return self.put(word, executable=os.access(path, os.X_OK))
        return word

    # -- what the remote kernel is --
    def capabilities(self, progress: Progress = silent) -> Capabilities:
        self.start(progress)
        facts = self.facts
        if facts.get("bpftrace") is None:
            raise RemoteError(
                f"{self.host} has no bpftrace on PATH",
                "install it there (Debian/Ubuntu: apt-get install bpftrace), or trace another host",
            )
        return capabilities_of(facts, self.tool_version("bpftrace"), kvm=False)

    def tool_version(self, tool: str) -> str | None:
        """A remote tool's version line, cached here by the binary's path, size and mtime (the
        same binary answers the same anywhere: a VM guest's bpftrace is the host's file)."""
        ident = self.facts.get(tool)
        if ident is None:
            return None
        key = f"{ident['path']}:{ident['size']}:{ident['mtime']}"
        cache = _bpftrace_versions_cache()
        known: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(cache.read_text())
        if key not in known:
            local = _local_version(tool, ident)
            text = local or self.request({"op": "version", "tool": tool})["text"]
            if not text:
                return None
            known[key] = text
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(known, indent=1))
            tmp.replace(cache)
        return known[key]

    def bpftrace(self, tracer: Bpftrace) -> Bpftrace:
        """The release that runs here: the remote's own bpftrace for the system choice (codegen
        writes for its version); another release only where its root is visible (a guest)."""
        if tracer.name != SYSTEM:
            return tracer
        self.start()
        ident = self.facts.get("bpftrace") or {}
        text = self.capabilities().bpftrace or ""
        return Bpftrace(SYSTEM, "bpftrace", text, f"{self.host}:{ident.get('path')}")

    def kallsyms(self) -> Kallsyms:
        """The remote kernel's symbols, cached here by its boot id (a reboot moves them)."""
        if self._kallsyms is None:
            self.start()
            boot = str(self.facts.get("boot_id") or "")
            cache = cache_home() / "lanes" / f"kallsyms-{boot}.txt" if boot else None
            text = _kept(cache, lambda: str(self.request({"op": "kallsyms"})["text"]).encode())
            self._kallsyms = Kallsyms(text.decode())
        return self._kallsyms

    # -- the machine side of a run (ElsewhereLane sends it) --
    def compiled(self, program: ProgramSource, req: RunRequest, asked: Asked
                 ) -> tuple[RunRequest, Asked, Callable[[RunResult], RunResult]]:
        """The program compiled here for the remote's bpftrace-aotrt, where it can be
        (aot_run); the result then says how (extra["aot"]) and carries its notes."""
        aot = self.aot_run(req.bpftrace, req.marker, program)
        self.last_aot = None if aot is None else aot.describe()
        if aot is None:
            return req, asked, lambda result: result
        if isinstance(program, str):
            req = replace(req, aot=True, compiled=aot.answer(program).get("aot"))
        else:
            made = program
            req = replace(req, aot=True)
            asked = lambda pid: aot.answer(made(pid), pid)  # noqa: E731

        self.settling = aot

        def finish(result: RunResult) -> RunResult:
            self.settled()
            self.last_aot = aot.describe()
            result.extra["aot"] = self.last_aot
            result.warnings.extend(aot.notes)
            if result.output is not None:
                result.output.warnings.extend(aot.notes)
            return result

        return req, asked, finish

    def aot_run(self, bpftrace: str, marker: str, program: ProgramSource) -> Any:
        """How this run's program is compiled here for the remote's bpftrace-aotrt
        (harness.lanes.aot_run.AotRun), or None: the remote has no bpftrace-aotrt, runs another
        release than its own bpftrace, no bpftrace here is its version, or KTRACE_AOT=0."""
        wanted = os.environ.get("KTRACE_AOT", "guests")
        if wanted == "0" or (wanted != "1" and not self.aot_by_default) or bpftrace != "bpftrace":
            return None
        self.start()
        if self.facts.get("aotrt") is None:
            return None
        version = self.tool_version("bpftrace")
        local = _local_same_bpftrace(version)
        if local is None:
            return None
        try:  # the probes the program will have, to read their formats before the run
            sample = program if isinstance(program, str) else program(1)
        except HarnessError:
            return None
        tracefs = str(self.facts.get("tracefs") or "")
        there = {rel: self.request({"op": "read", "path": f"{tracefs}/{rel}"}).get("text")
                 for rel in format_files(sample, marker)}
        portable = None  # a spec's program, written with its cast member reads at offsets
        if isinstance(program, Programs) and program.reads_through_casts() and \
                self.facts.get("btf") and self.facts.get("arch") in LITTLE_ENDIAN_ARCHES:
            if not self._btf_file().is_file():  # here now: no request can go out during the run
                self._btf_data()
            spec_program = program
            portable = lambda pid: spec_program.portable(pid, self.member_layout)  # noqa: E731
        if isinstance(program, Programs):  # its text for any pid, not recorded as the run's
            source: Callable[[int | None], str] = program.plan.program
        elif isinstance(program, str):
            text = program
            source = lambda pid: text  # noqa: E731
        else:
            source = program
        return AotRun(marker, local, self.host, there, portable, source, version or "")

    settling: Any = None  # the run's AotRun until settled (its templates made meanwhile)

    def settled(self, failed: bool = False) -> None:
        """After a run: its compile's template is checked and kept (aot_reuse), or, when the
        run failed, its background compiles are stopped."""
        aot, self.settling = self.settling, None
        if aot is not None and failed:
            aot.cancel()
        elif aot is not None:
            aot.settle()

    def _btf_key(self) -> str:
        """The remote kernel's build (uname -r, -v), which names its BTF here."""
        self.start()
        build = f"{self.facts.get('kernel')}\0{self.facts.get('kernel_version')}"
        return hashlib.sha256(build.encode()).hexdigest()[:16]

    def _btf_file(self) -> Path:
        """Where the remote kernel's raw BTF is kept here, by its build."""
        return cache_home() / "lanes" / "btf" / f"{self._btf_key()}.btf"

    def _btf_data(self) -> bytes:
        """The remote kernel's raw BTF, kept here by its build."""
        return _kept(self._btf_file(),
                     lambda: base64.b64decode(self.request({"op": "btf"})["data"]))

    def btf(self) -> Btf:
        """The remote kernel's BTF, cached here by its release and build (uname -r, -v)."""
        if self._btf is None:
            self._btf = Btf(self._btf_data())
        return self._btf

    def member_layout(self, struct_name: str, member: str) -> Field | None:
        """`struct struct_name`'s member as the remote kernel lays it out (Btf.field), kept
        here beside its BTF: a spec's runs ask the same few members, and indexing a kernel's
        whole BTF costs 0.15-0.3 s of every run. The BTF must be here already (_btf_data)."""
        path = self._btf_file().with_suffix(".members.json")
        known: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(path.read_text())
        name = f"{struct_name}.{member}"
        if name not in known:
            f = self.btf().field(struct_name, member)
            known[name] = None if f is None else [f.offset, f.size, f.signed, f.kind]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(known, indent=1))
            tmp.replace(path)
        kept = known[name]
        return None if kept is None else Field(int(kept[0]), int(kept[1]), bool(kept[2]),
                                               str(kept[3]))

    aot_by_default = False  # compile here for bpftrace-aotrt (guests kept up; KTRACE_AOT=1: all)

    def describe(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "name": self.name,
            "host": self.host,
            "transport": "ssh",
            "release": facts.get("kernel"),
            "hostname": facts.get("hostname"),
            "boot_id": facts.get("boot_id"),
            "session": self.session,
            "python": facts.get("python"),
            "connect_s": self.connect_s,
            "agent": self.agent,
            **({"resident_failed": self.resident_failed} if self.resident_failed else {}),
            "calls": [[op, s] for op, s in self.conn.timeline] if self.conn is not None else [],
            "aot": self.last_aot,
        }


def _kept(cache: Path | None, fetch: Callable[[], bytes]) -> bytes:
    """What `fetch` brings from the remote, kept in `cache` (None: not kept) for later calls;
    written whole (a private name, then a rename), so concurrent writers publish equal files."""
    if cache is not None and cache.is_file():
        return cache.read_bytes()
    data = fetch()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(cache)
    return data


def _local_version(tool: str, ident: dict[str, Any]) -> str | None:
    """The version line of the very same binary here (same path, size and mtime), if any."""
    path = shutil.which(tool)
    if path is None or path != ident.get("path"):
        return None
    st = os.stat(path)
    if (st.st_size, int(st.st_mtime)) != (ident.get("size"), ident.get("mtime")):
        return None
    if tool == "bpftrace":
        return capabilities().bpftrace
    return None


def _local_same_bpftrace(version: str | None) -> str | None:
    """The bpftrace here when its version line is exactly the remote's (it compiles for it);
    None otherwise (a remote on another release runs its own bpftrace)."""
    return "bpftrace" if version and capabilities().bpftrace == version else None


# --- SSH -----------------------------------------------------------------------------------------

SSH_OPTIONS = (
    "-T",  # no pty: the agent's stdin/stdout are the protocol
    "-o", "BatchMode=yes",  # never prompt: keys and agents only
    "-o", "ServerAliveInterval=5",  # notice a dead link within ~15 s here too
    "-o", "ServerAliveCountMax=3",
)


def parse_destination(text: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` (an IPv6 address in brackets) -> (user, host, port)."""
    m = re.fullmatch(r"(?:([^@\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[^:@\s\[\]]+)(?::(\d+))?", text)
    if not m:
        raise RemoteError(
            f"cannot read the ssh destination {text!r}",
            "write ssh:[user@]host[:port], e.g. ssh:lab-box or ssh:root@10.0.0.7:2222",
        )
    user, host, port = m.group(1), m.group(2).strip("[]"), m.group(3)
    return user, host, int(port) if port else None


class SSHLane(RemoteLane):
    """`ssh:[user@]host[:port]`: the user's ssh, with the user's config as it is."""

    def __init__(self, destination: str, config: Path | None = None) -> None:
        self.user, host, self.port = parse_destination(destination)
        super().__init__(f"ssh:{destination}", host)
        self.config = config
        # A resident agent there (agent.py): its port on the remote's 127.0.0.1, its secret.
        self.resident: tuple[int, str] | None = None

    def ssh_argv(self, *options: str) -> list[str]:
        argv = ["ssh", *SSH_OPTIONS, *options]
        if self.config is not None:
            argv += ["-F", str(self.config)]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.user is not None:
            argv += ["-l", self.user]
        return [*argv, self.host]

    def resident_command(self) -> list[str] | None:
        """ssh's stdio forwarded to the resident agent's port there (`ssh -W 127.0.0.1:PORT`):
        the session is a fork of a process that has its modules imported already."""
        if self.resident is None:
            return None
        return self.ssh_argv("-W", f"127.0.0.1:{self.resident[0]}")

    def command(self, session: str) -> list[str]:
        return [*self.ssh_argv(), "--", remote_command(session)]

"""bpftrace under pexpect: start, wait until the probes are live, drive a workload, stop cleanly.

bpftrace prints "Attaching N probes..." before its probes are live, so the program's BEGIN block
prints a unique marker and the workload starts only after that marker. Stopping is Ctrl-C through
the pty, which makes bpftrace print its maps; the whole process group is killed if it lingers.
Every failure bpftrace reports is classified into a typed error with a one-line message.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pexpect

from harness.errors import HarnessError
from harness.host.capabilities import missing_bpf_privileges
from harness.host.lifetime import die_with_parent, shielded, watchdog
from harness.host.workload import CAPTURE_KEEP, GatedWorkload

if TYPE_CHECKING:
    from harness.output.model import Output

# "Attaching N probes..." before 0.24 (stdout), "Attached N probes" from 0.24 on (stderr).
ATTACH_RE = re.compile(rb"Attach(?:ing|ed) (\d+) probes?")
# Lines bpftrace writes to stderr; the pty merges them with stdout, so they are split back here.
# A location is `stdin:L:C-C2:` or, for a diagnostic spanning lines, `stdin:L1-L2:`.
LOCATION = r"\S+?:\d+(?:[:-]\d+)*: "
DIAG_RE = re.compile(
    rf"^(?:{LOCATION})?(?:ERROR|WARNING|error|warning)\b.*$"
    r"|^create_probe_event: .*$"
    r"|^[Cc]ould not .*$"
)
STOP_GRACE = 10.0  # seconds bpftrace may sit idle after SIGINT before it is terminated
STOP_CAP = 300.0  # ... and at most this long while it keeps working (printing big maps)
# bpftrace leaves its event wait at once on a SIGINT it catches: one found back in that wait
# with every probe still open missed it, and gets it again; where the wait cannot be seen
# (no /proc wchan), one that has not begun to stop this long after SIGINT (see _wait_exit).
RESEND_AFTER = 0.25
ESCALATION_WAIT = 3.0  # seconds after each of SIGTERM and SIGKILL, when SIGINT did not stop it
POLL = 0.05  # how often the stop wait looks at the process when its output has not ended


class BpftraceError(HarnessError):
    """bpftrace refused or failed to run the program."""


class BpftraceSyntaxError(BpftraceError):
    """The program text does not parse; carries the line and column bpftrace named."""

    def __init__(self, cause: str, fix: str, line: int, column: int) -> None:
        super().__init__(cause, fix)
        self.line = line
        self.column = column


class UnknownProbe(BpftraceError):
    """The attach point does not exist in this kernel."""


class UnknownField(BpftraceError):
    """A struct field read through BTF does not exist."""


class NotRoot(BpftraceError):
    """bpftrace needs root (CAP_BPF and friends)."""


class MissingKernelFeature(BpftraceError):
    """The kernel lacks what the probe needs (kprobes, kfunc, BTF)."""


class BpftraceTimeout(BpftraceError):
    """bpftrace did not get its probes live in time, or did not stop."""


# Lines bpftrace prints on every run that say nothing about this one: 0.17 reports a failed
# setrlimit as an ERROR although the kernel charges BPF memory to the cgroup since 5.11.
HARMLESS_RE = re.compile(r"RLIMIT_MEMLOCK")


def without_harmless(text: str) -> str:
    """bpftrace's stderr without the lines that appear on every run (HARMLESS_RE)."""
    return "\n".join(ln for ln in text.splitlines() if not HARMLESS_RE.search(ln))


def classify(text: str, program: str = "") -> BpftraceError | None:
    """Map bpftrace's diagnostics to the first matching typed error, or None."""
    text = without_harmless(text)
    m = re.search(r"^\S+?:(\d+):(\d+)(?:-\d+)?: ERROR: syntax error,? ?(.*)$", text, re.M)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        src = (
            program.splitlines()[line - 1].strip() if 0 < line <= len(program.splitlines()) else ""
        )
        return BpftraceSyntaxError(
            f"bpftrace syntax error at line {line}, column {col}: {m.group(3).strip()}"
            + (f" in `{src}`" if src else ""),
            "fix the program text at that position",
            line,
            col,
        )
    rules: list[tuple[str, Callable[[re.Match[str]], BpftraceError]]] = [
        (
            r"only supports running as the root user|Operation not permitted.*(?:root|CAP_)",
            lambda m: NotRoot("bpftrace needs root", "run the harness as root (sudo)"),
        ),
        (
            r"does not contain a field named '([^']+)'",
            lambda m: UnknownField(
                f"unknown struct field '{m.group(1)}' ({_error_line(text)})",
                "check the field name against the kernel's BTF (bpftool btf dump file "
                "/sys/kernel/btf/vmlinux | grep -A40 'struct NAME {')",
            ),
        ),
        (
            r"kfunc/kretfunc not available|fentry.*not (?:available|supported)",
            lambda m: MissingKernelFeature(
                "kfunc/fentry probes are not available on this kernel",
                "use the kprobe or tracepoint equivalent, or --lane vm",
            ),
        ),
        (
            r"kprobe_events\): No such file|Error attaching probe: '(?:kprobe|kretprobe):",
            lambda m: MissingKernelFeature(
                "kprobes are not built into this kernel (no kprobe_events)",
                "use the tracepoint equivalent, or run the kprobe with --lane vm",
            ),
        ),
        (
            r"(?:tracepoint|probe) not found: (\S+)|No probes to attach|Invalid probe point",
            lambda m: UnknownProbe(
                f"probe not found in this kernel: {m.group(1) or _error_line(text)}",
                "list the available ones with `bpftrace -l 'PATTERN'`",
            ),
        ),
        (
            r"BTF.*(?:not available|not found|missing)|Could not resolve.*BTF",
            lambda m: MissingKernelFeature(
                f"BTF is missing: {_error_line(text)}",
                "use a kernel built with CONFIG_DEBUG_INFO_BTF (or --lane vm)",
            ),
        ),
    ]
    for pattern, make in rules:
        m = re.search(pattern, text)
        if m:
            return make(m)
    if re.search(r"^(?:\S+: )?ERROR:", text, re.M):
        return BpftraceError(
            f"bpftrace failed: {_error_line(text)}",
            "fix what bpftrace names (--dry-run prints the program as it would run)",
        )
    return None


def _error_line(text: str) -> str:
    """The first real ERROR line (harmless ones skipped), without bpftrace's location prefix."""
    text = without_harmless(text)
    for line in text.splitlines():
        if "ERROR:" in line:
            return line.split("ERROR:", 1)[1].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def split_diagnostics(text: str) -> tuple[str, str]:
    """Separate bpftrace's stderr lines (and their source excerpts) from its stdout."""
    out: list[str] = []
    diag: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if DIAG_RE.match(line):
            if not HARMLESS_RE.search(line):  # stays in the raw stderr only
                diag.append(line)
            # A located diagnostic is followed by the source line and a `~~~` underline.
            if (
                re.match(LOCATION, line)
                and i + 2 < len(lines)
                and set(lines[i + 2].strip()) <= {"~", "^"}
            ):
                diag.extend(lines[i + 1 : i + 3])
                i += 2
        else:
            out.append(line)
        i += 1
    return "\n".join(out) + ("\n" if out else ""), "\n".join(diag)


LOST_RE = re.compile(r"\bLost (\d+) events\b")


@dataclass
class RunRequest:
    """One bpftrace run around an optional workload, as the harness asks a lane for it
    (harness.lanes.protocol carries it to a guest or a remote host): the program itself is
    given apart, as text or as a function of the workload's pid (asked of the harness then)."""

    marker: str
    workload: list[str] | None = None
    duration: float | None = None
    timeout: float = 60.0
    bpftrace: str = "bpftrace"  # the command that starts it (another release's wrapper)
    program: str | None = None  # on the wire: the text when it does not depend on the pid
    aot: bool = False  # compiled by the harness, run with bpftrace-aotrt (harness.lanes.aot)
    compiled: str | None = None  # ... the compiled program (base64) when `program` is given


@dataclass
class Capture:
    """What one bpftrace run left behind, raw: the machine side's whole answer (this machine,
    a VM guest or a remote host alike); nothing in it is parsed. harness.host.parsed turns it
    into a RunResult, once, on the harness's side.

    `stdout` and `stderr` are bpftrace's two streams as it wrote them (CRLF from the pty made
    LF). `line_times[i]` is when stdout line i+1 arrived, in seconds since the probes attached
    (negative before). `ended_by` says what stopped the run: workload-exit, duration,
    program-exit, ctrl-c, signal or error.
    """

    program: str
    stdout: str
    diagnostics: str
    exit_status: int | None
    interrupted: bool
    started: float
    attached: float | None
    stopped: float
    probes: int | None = None
    error: HarnessError | None = None
    workload_status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""
    line_times: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ended_by: str = "program-exit"

    @property
    def time_to_attached(self) -> float | None:
        return None if self.attached is None else self.attached - self.started


@dataclass
class RunResult(Capture):
    """A Capture with what the parser read from its stdout (harness.host.parsed.parse_capture);
    `output` is None only when nothing parsed."""

    output: Output | None = None


class Interrupted(HarnessError):
    """The run was stopped by Ctrl-C or a termination signal; what was gathered is kept. With
    `kept=False` it stopped before tracing started (before bpftrace started or attached, a
    guest's boot given up, a stopped guest run that gave nothing back): nothing was gathered,
    and it says so instead of promising partial results."""

    partial: Any = None  # what was gathered and written, where the raiser hands it on

    def __init__(self, signum: int = int(signal.SIGINT), kept: bool = True) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if kept:
            super().__init__(f"interrupted by {name}", "partial results were kept")
        else:
            super().__init__(f"interrupted by {name} before tracing started",
                             "nothing was gathered")
        self.signum = signum
        self.exit_code = 128 + signum


class _StreamReader(threading.Thread):
    """Reads bpftrace's stdout (the pty) and stderr (a pipe) for the whole run.

    bpftrace blocks on a full pty and then drops perf events, so nothing may pause reading:
    this thread owns both descriptors from spawn to EOF. Each stdout line is stamped with its
    monotonic arrival time; waiters are woken on every new line and at EOF.
    """

    def __init__(self, pty_fd: int, err_fd: int) -> None:
        super().__init__(name="bpftrace-reader", daemon=True)
        self.pty_fd = pty_fd
        self.err_fd = err_fd
        self.cond = threading.Condition()
        self.lines: list[str] = []
        self.times: list[float] = []
        self.stderr = bytearray()
        self.out_eof = False
        self.err_eof = False
        self._partial = b""
        # stdout ended inside a line (no newline after its last bytes): that line was cut off
        self.cut = False

    def run(self) -> None:
        fds = {self.pty_fd: "out", self.err_fd: "err"}
        while fds:
            try:
                ready, _, _ = select.select(list(fds), [], [], 1.0)
            except (OSError, ValueError):
                break
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the pty's other side is closed (bpftrace exited)
                    chunk = b""
                now = time.monotonic()
                with self.cond:
                    if fds[fd] == "out":
                        self._add_out(chunk, now)
                    elif chunk:
                        self.stderr += chunk
                    else:
                        self.err_eof = True
                    if not chunk:
                        del fds[fd]
                    self.cond.notify_all()
        with self.cond:
            self.out_eof = self.err_eof = True
            self._add_out(b"", time.monotonic())
            self.cond.notify_all()

    def _add_out(self, chunk: bytes, now: float) -> None:
        if not chunk:
            self.out_eof = True
            if self._partial:
                self.lines.append(_decode(self._partial))
                self.times.append(now)
                self.cut = not self._partial.endswith(b"\r")  # a pty's CR of CRLF: whole
                self._partial = b""
            return
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        for raw in complete:
            self.lines.append(_decode(raw))
            self.times.append(now)

    def stdout(self) -> str:
        """The stdout read so far as one text (call under the lock): ending as the stream
        did, without a newline when it stopped inside its last line (cut off)."""
        return "\n".join(self.lines) + ("\n" if self.lines and not self.cut else "")

    def wait_for(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Wait until predicate() (called under the lock) holds; False at the deadline."""
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
            return True


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


class BpftraceProcess:
    """One bpftrace process in its own session: stdout on a pty (line-buffered, as a user sees
    it), stderr on a pipe (so diagnostics never mix into the data), both read all run."""

    def __init__(
        self,
        program: str,
        marker: str,
        *,
        bpftrace: str = "bpftrace",
        env: dict[str, str] | None = None,
        argv_prefix: Sequence[str] = (),
        on_spawn: Callable[[], None] | None = None,
    ) -> None:
        self.program = program
        self.on_spawn = on_spawn  # called once bpftrace runs (the harness warms its parser)
        self.marker = marker
        self.bpftrace = bpftrace
        self.env = {**os.environ, **(env or {})}
        self.argv_prefix = list(argv_prefix)
        self.child: pexpect.spawn | None = None
        self.started = 0.0
        self.attached: float | None = None
        self.probes: int | None = None
        self.reader: _StreamReader | None = None
        self.result: Capture | None = None  # set by stop(), also when wait_attached raises
        self.stop_requested: float | None = None
        self.escalations: list[str] = []
        self.sigint_resent = 0
        self._marker_index: int | None = None
        self._probe_fds = 0  # perf events it held when the stop began (see _wait_exit)

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None

    def start(self) -> None:
        """Spawn bpftrace; the program goes on the command line so errors name `stdin:L:C`."""
        why_not = missing_bpf_privileges()
        if why_not:
            raise NotRoot(
                f"bpftrace cannot run here: {why_not}",
                "run the harness as root with its capabilities (sudo; a container needs "
                "CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)",
            )
        argv = [*self.argv_prefix, self.bpftrace, "-e", self.program]
        self.started = time.monotonic()
        # A stop signal waits until bpftrace is spawned, guarded and read (then stop() can
        # stop it): one landing in between left a process nothing knew how to stop.
        with shielded(deliver=True):
            # stderr goes to a FIFO: pty spawning closes every inherited descriptor before the
            # preexec hook runs, so the hook opens the write side by name.
            fifo_dir = tempfile.mkdtemp(prefix="ktrace-bt-")
            dog = watchdog()
            dog.guard_path(fifo_dir)
            fifo = os.path.join(fifo_dir, "stderr")
            os.mkfifo(fifo, 0o600)
            err_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            pdeath = die_with_parent()

            def preexec() -> None:
                pdeath()
                fd = os.open(fifo, os.O_WRONLY)
                os.dup2(fd, 2)
                os.close(fd)

            try:
                self.child = pexpect.spawn(
                    argv[0],
                    argv[1:],
                    env=self.env,
                    timeout=None,
                    maxread=1 << 20,
                    echo=False,
                    dimensions=(500, 500),
                    preexec_fn=preexec,
                )
            except pexpect.ExceptionPexpect as err:
                os.close(err_fd)
                raise BpftraceError(
                    f"cannot start {argv[0]}: {err}", "install bpftrace (scripts/setup.sh)"
                ) from None
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(fifo)
                    os.rmdir(fifo_dir)
                dog.release_path(fifo_dir)
            # Its own session and process group (the pty's); the watchdog kills that group if the
            # harness dies (PDEATHSIG reaches only bpftrace itself, not a wrapper's children).
            dog.guard_group(self.child.pid)
            # close() sleeps this long "to let the kernel update the process status"; stop() has
            # already read to EOF and reaped bpftrace, so the default 0.1 s is pure wait per run.
            # pexpect hands close() to ptyprocess, which sleeps its own copy of the delay.
            self.child.delayafterclose = 0.0
            self.child.ptyproc.delayafterclose = 0.0
            self.reader = _StreamReader(self.child.child_fd, err_fd)
            self.reader.start()
        if self.on_spawn is not None:
            self.on_spawn()

    def wait_attached(self, timeout: float = 60.0,
                      stop_check: Callable[[], int | None] | None = None) -> None:
        """Block until the BEGIN marker shows that every probe is live, or raise a typed error.
        `stop_check` (see capture_bpftrace) ends the wait as a Ctrl-C in this thread would."""
        assert self.child is not None and self.reader is not None, "start() first"
        reader = self.reader
        deadline = time.monotonic() + timeout
        asked = stop_check or (lambda: None)
        # The marker must be a line of its own: diagnostics echo the program text, marker included.
        ok = reader.wait_for(
            lambda: self._find_marker() is not None or reader.out_eof or asked() is not None,
            deadline,
        )
        raise_if_asked(asked)
        ok = ok and self._marker_index is not None
        if ok:
            assert self._marker_index is not None
            self.attached = reader.times[self._marker_index]
            return
        alive = self.child.isalive()
        result = self.stop()
        if result.error is not None:
            raise result.error
        if alive:
            raise BpftraceTimeout(
                f"bpftrace did not attach within {timeout:g}s (no '{self.marker}' from BEGIN)",
                "raise --timeout, or check that the program has a BEGIN marker",
            )
        raise BpftraceError(
            f"bpftrace exited before attaching: {_error_line(result.diagnostics or result.stdout)}",
            "run the program by hand with `bpftrace -e` to see why",
        )

    def _find_marker(self) -> int | None:
        """Index of the marker line (called under the reader's lock); also notes the probes."""
        assert self.reader is not None
        if self._marker_index is None:
            for i, line in enumerate(self.reader.lines):
                m = ATTACH_RE.search(line.encode())
                if m and self.probes is None:
                    self.probes = int(m.group(1))
                # BEGIN runs only once every probe is attached, so the marker alone suffices
                # (0.24+ reports "Attached N probes" on stderr, not before the marker).
                if line.strip() == self.marker:
                    self._marker_index = i
                    break
            if self._marker_index is not None and self.probes is None:
                m = ATTACH_RE.search(bytes(self.reader.stderr))
                self.probes = int(m.group(1)) if m else None
        return self._marker_index

    def is_running(self) -> bool:
        return self.child is not None and self.child.isalive()

    def stop(self, grace: float | None = None) -> Capture:
        """SIGINT (bpftrace prints its maps), wait for its exit and the end of its output,
        escalate to TERM/KILL only if it lingers without working.

        Called again while a stop is under way (a Ctrl-C cut the first call short), it sends
        no second SIGINT: bpftrace 0.17 restores SIGINT's default, fatal action once its probes
        are detached, so one landing while it prints its maps kills it mid-print. It only
        waits on. Once stopped, the same result is returned."""
        assert self.child is not None and self.reader is not None, "start() first"
        if self.result is not None:
            return self.result
        child, reader = self.child, self.reader
        grace = STOP_GRACE if grace is None else grace
        if child.isalive() and self.stop_requested is None:
            self.stop_requested = time.monotonic()
            self._probe_fds = self._perf_event_fds()
            self._signal(signal.SIGINT)
        if child.isalive() and not self.escalations:
            self._wait_exit(grace, STOP_CAP, self._probe_fds)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if child.isalive():
                self.escalations.append(sig.name)
                self._signal_group(sig)
                self._wait_exit(ESCALATION_WAIT, ESCALATION_WAIT)
        with contextlib.suppress(pexpect.ExceptionPexpect, OSError):
            child.wait()
        reader.join(5)
        if not reader.is_alive():
            with contextlib.suppress(OSError):
                os.close(reader.err_fd)
            child.close(force=True)
        watchdog().release_group(child.pid)
        status = (
            child.exitstatus
            if child.exitstatus is not None
            else (-child.signalstatus if child.signalstatus else None)
        )
        self.result = self._result(status, self.stop_requested is not None)
        return self.result

    def _wait_exit(self, idle: float, cap: float, probe_fds: int = 0) -> None:
        """Wait for bpftrace to exit and its stdout to close (all output read).

        Stopping can take long, and what bpftrace prints at the end is the result: it detaches
        every probe first (0.17: tens of milliseconds each, waiting in the kernel rather than
        using CPU: `sys_enter_*`'s 361 take ~27 s), then prints its maps (symbolizing thousands
        of stacks is slow on a loaded machine). So the wait ends only after `idle` seconds
        WITHOUT progress: CPU time used, output, or descriptors closed (each detached probe
        closes its perf event). `cap` bounds the time without a descriptor closing (output
        and CPU could go on for ever; the descriptors cannot).

        bpftrace 0.17 misses a SIGINT that lands while it is outside its epoll_wait: the exit
        flag is set but only a failed epoll_wait or a new event checks it, so an idle run
        never stops (measured here: 1 stop in 4 hung until SIGTERM; on a loaded machine, where
        it often waits for a CPU between two 100 ms waits, up to 4 in 6). While it still
        holds all its probe perf events (`probe_fds`, counted at the first SIGINT; it closes
        them as soon as it starts to stop), no output came, and it is alive, it is still in
        its event loop, where a second SIGINT only sets the flag again (the default, fatal
        SIGINT comes back only after the probes are gone and its last events are drained,
        before it prints the maps). Then SIGINT is sent again as soon as it is seen asleep in
        its event wait with no signal pending (it took the first one and went back: a miss for
        certain), else every RESEND_AFTER seconds.
        """
        assert self.reader is not None and self.child is not None
        reader, child = self.reader, self.child
        last_progress = last_look = last_signal = last_closed = time.monotonic()
        look_every = min(1.0, idle / 4)
        last_mark = self._progress_mark()
        lines_at_start = len(reader.lines)
        while True:
            now = time.monotonic()
            if not child.isalive():
                # Exited: read what is left (a grandchild may hold the pty open: bounded).
                reader.wait_for(lambda: reader.out_eof, now + 1.0)
                return
            if now - last_progress >= idle or now - last_closed >= cap:
                return
            if reader.out_eof:  # its output has ended: it is exiting, to be reaped shortly
                time.sleep(0.005)
            else:  # its stdout ends as it exits: wake at once then, not at the next poll
                reader.wait_for(lambda: reader.out_eof, now + min(POLL, look_every))
            now = time.monotonic()
            if now - last_look >= look_every:
                mark = self._progress_mark()
                cpu = (mark[0] - last_mark[0]) / max(now - last_look, 1e-3)
                if mark[1:] != last_mark[1:] or cpu > 5:  # lines, descriptors, >5% CPU
                    last_progress = now
                if mark[2] < last_mark[2]:
                    last_closed = now
                last_look, last_mark = now, mark
            if (
                probe_fds
                and len(reader.lines) == lines_at_start
                and child.isalive()
                and self._perf_event_fds() == probe_fds
                and (now - last_signal >= RESEND_AFTER or back_in_event_wait(child.pid))
            ):
                last_signal = now
                self.sigint_resent += 1
                self._signal(signal.SIGINT)

    def _progress_mark(self) -> tuple[int, int, int]:
        """(CPU ticks bpftrace has used, stdout lines read, descriptors it holds open): they
        change while it works."""
        assert self.reader is not None and self.child is not None
        try:
            fields = Path(f"/proc/{self.child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            ticks = -1
        try:
            fds = len(os.listdir(f"/proc/{self.child.pid}/fd"))
        except OSError:
            fds = -1
        return ticks, len(self.reader.lines), fds

    def _perf_event_fds(self) -> int:
        assert self.child is not None
        return perf_event_fds(self.child.pid)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.child.pid, sig)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, sig)

    def _result(self, status: int | None, interrupted: bool) -> Capture:
        assert self.reader is not None
        with self.reader.cond:
            lines = list(self.reader.lines)
            times = list(self.reader.times)
            stdout = self.reader.stdout()
            stderr = self.reader.stderr.decode("utf-8", "replace").replace("\r\n", "\n")
        base = self.attached if self.attached is not None else self.started
        # Diagnostics still found on stdout (a wrapper such as setpriv may write there too).
        _, stray = split_diagnostics(stdout)
        # Harmless every-run lines stay in the raw stderr only.
        diagnostics = "\n".join(part for part in (without_harmless(stderr), stray) if part)
        result = Capture(
            program=self.program,
            stdout=stdout,
            diagnostics=diagnostics,
            exit_status=status,
            interrupted=interrupted,
            started=self.started,
            attached=self.attached,
            stopped=time.monotonic(),
            probes=self.probes,
            stderr=stderr,
            line_times=[t - base for t in times],
        )
        result.warnings = lost_event_warnings(lines, stderr)
        if self.stop_requested is not None:
            result.extra["stop_s"] = result.stopped - self.stop_requested
        if self.sigint_resent:
            result.extra["sigint_resent"] = self.sigint_resent
            result.warnings.append(
                "bpftrace went on waiting for events after SIGINT (0.17 misses one that lands "
                f"outside its event wait); sent it again {self.sigint_resent} time(s)"
            )
        if self.escalations:
            result.extra["escalations"] = list(self.escalations)
            result.warnings.append(
                f"bpftrace did not exit after SIGINT; sent {', '.join(self.escalations)}"
            )
        if status not in (0, None) or self.attached is None:
            result.error = classify(diagnostics or stdout, self.program)
        if self.escalations and status != 0 and result.error is None:
            # Killed while stopping: the maps it prints last are missing or cut, so what was
            # printed is kept (stdout.txt) but is no result ("no events" would be a lie).
            waited = time.monotonic() - (self.stop_requested or self.started)
            result.error = BpftraceTimeout(
                f"bpftrace was still stopping {waited:.0f}s after SIGINT without progress and "
                f"was killed ({', '.join(self.escalations)}) before it printed all its maps",
                "what it printed is kept in stdout.txt; on a loaded machine run again, or "
                "trace fewer probes (each detaches on its own at the end)",
            )
        return result


def stdout_to_parse(stdout: str, marker: str, marker_index: int | None = None) -> str:
    """bpftrace's stdout as the parser reads it: the ready marker's line emptied, so line
    numbers still match stdout.txt, and its end kept as it was: a stream that stopped inside
    its last line (no newline) tells the parser that line was cut off (a value there may be
    cut mid-number). Every place that parses a run's stdout goes through here."""
    return "\n".join("" if i == marker_index or ln.strip() == marker else ln
                     for i, ln in enumerate(stdout.split("\n")))


def back_in_event_wait(pid: int) -> bool:
    """Whether a process sleeps in epoll_wait with no SIGINT pending (/proc: its state, wchan
    and pending signals); False when that cannot be read.

    Right after a kill() the target is runnable until it has handled the signal, so a tracer
    found asleep in its event wait afterwards has taken the signal and gone back to waiting."""
    proc = Path("/proc", str(pid))
    try:
        wchan = (proc / "wchan").read_text()
        status = (proc / "status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    sigint = 1 << (signal.SIGINT - 1)
    try:
        pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
        sleeping = fields["State"].split()[0] == "S"
    except (KeyError, ValueError, IndexError):
        return False
    in_epoll = "epoll" in wchan or "ep_poll" in wchan  # do_epoll_wait; ep_poll before 5.x
    return sleeping and in_epoll and not pending & sigint


def perf_event_fds(pid: int) -> int:
    """How many perf events a tracer holds open (bpftrace: its probes plus one buffer per CPU;
    the probes' close as it starts to stop, which is how a missed SIGINT is told apart)."""
    count = 0
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(fd.path) == "anon_inode:[perf_event]"
    except OSError:
        return 0
    return count


def lost_event_warnings(stdout_lines: Sequence[str], stderr: str) -> list[str]:
    """bpftrace's own "Lost N events" reports, as warnings naming the stream and line."""
    found = []
    for stream, lines in (("stdout", stdout_lines), ("stderr", stderr.splitlines())):
        for n, line in enumerate(lines, 1):
            m = LOST_RE.search(line)
            if m:
                found.append(
                    f"bpftrace lost {m.group(1)} events ({stream} line {n}: {line.strip()!r}); "
                    "the perf buffer overflowed, counts from printf lines are short"
                )
    return found


def raise_if_asked(stop_check: Callable[[], int | None]) -> None:
    """A stop asked from another thread (stop_check() gives its signal) raised here as the
    KeyboardInterrupt that signal raises in the main thread, so the same path stops the run."""
    signum = stop_check()
    if signum is not None:
        stop = KeyboardInterrupt()
        stop.signum = signum  # type: ignore[attr-defined]
        raise stop


def capture_bpftrace(
    program: str | Callable[[int | None], str],
    marker: str,
    *,
    workload: Sequence[str] | None = None,
    duration: float | None = None,
    timeout: float = 60.0,
    on_progress: Callable[[float], None] | None = None,
    bpftrace: str = "bpftrace",
    stop_check: Callable[[], int | None] | None = None,
    on_spawn: Callable[[], None] | None = None,
) -> Capture:
    """Run one program: attach, release the workload (or wait `duration`), stop; its raw
    capture (harness.host.parsed.run_bpftrace parses it too).

    `program` may be a function of the workload's pid, so filters can name it before it runs.
    The result always comes back, even when the run was cut short: `result.error` says why.
    `bpftrace` is the command to start (another release's wrapper, harness.host.bpftrace_versions).
    A KeyboardInterrupt (Ctrl-C, or a SIGTERM/SIGHUP the CLI turned into one) stops the run
    the normal way and returns what was gathered, with an `Interrupted` error. A run in another
    thread than the one the signal reaches (a fleet's member) is stopped the same way when
    `stop_check()` gives a signal number; asked before bpftrace started, it raises Interrupted.
    """
    work: GatedWorkload | None = None
    proc: BpftraceProcess | None = None
    result: Capture | None = None
    ended_by = "error"
    asked = stop_check or (lambda: None)
    if asked() is not None:
        raise Interrupted(int(asked() or signal.SIGINT), kept=False)  # nothing started
    try:
        work = GatedWorkload(workload) if workload else None
        text = program(work.pid if work else None) if callable(program) else program
        if asked() is not None:
            raise Interrupted(int(asked() or signal.SIGINT), kept=False)
        proc = BpftraceProcess(text, marker, bpftrace=bpftrace, on_spawn=on_spawn)
        proc.start()
        proc.wait_attached(timeout, asked)
        if work is not None:
            work.go()
        t0 = time.monotonic()
        while True:
            raise_if_asked(asked)
            ended_by = _ended_by(proc, work, duration, time.monotonic() - t0)
            if ended_by:
                break
            if on_progress is not None:
                on_progress(time.monotonic() - t0)
            left = duration - (time.monotonic() - t0) if duration is not None else POLL
            time.sleep(min(POLL, max(left, 0.0)))
        result = proc.stop()
    except KeyboardInterrupt as stop:
        if proc is None or proc.child is None:
            raise
        with shielded():
            result = proc.stop()
        signum = getattr(stop, "signum", int(signal.SIGINT))
        # stopped before its probes attached, bpftrace printed no map: no partial results
        result.error = Interrupted(signum, kept=result.attached is not None)
        ended_by = "ctrl-c" if signum == signal.SIGINT else "signal"
    finally:
        with shielded() as held:
            if proc is not None and proc.child is not None and proc.is_running():
                proc.stop()
            if work is not None:
                work.close()
            if result is not None:
                result.ended_by = ended_by
                if work is not None:
                    keep_workload(result, work)
    assert result is not None
    if held and not isinstance(result.error, Interrupted):
        # A stop signal while the run was being stopped and collected: it ended normally and
        # everything is kept, but the user asked to stop, so the run says so (exit 128+N).
        result.error = result.error or Interrupted(held[0])
    return result


def keep_workload(result: Capture, work: GatedWorkload) -> None:
    """The workload's end (it must be closed) into the result: its status (none when the
    harness stopped it, at --duration or on Ctrl-C: it did not fail), its output (bounded),
    and a warning for each thing the user should know: bytes of output cut, processes it left
    running that ended with it."""
    status = work.wait()
    result.workload_status = None if work.stopped_by_harness else status
    result.extra.update(
        workload_stdout=work.stdout,
        workload_stderr=work.stderr,
        workload_output=work.output_counts(),
        workload_exit=status,
        workload_stopped_by_harness=work.stopped_by_harness,
        workload_isolation=work.isolation,
    )
    notes = [
        f"the workload wrote {c['bytes']} bytes to {stream}: {c['cut_bytes']} bytes in the "
        f"middle were cut (workload.{stream}.txt keeps the first and last "
        f"{CAPTURE_KEEP // 2} bytes)"
        for stream, c in work.output_counts().items() if c["cut_bytes"]
    ]
    if work.left:
        notes.append(
            f"the workload left {len(work.left)} process(es) running when it ended "
            f"({', '.join(work.left)}); they were ended with it"
        )
    result.warnings += notes


def _ended_by(
    proc: BpftraceProcess, work: GatedWorkload | None, duration: float | None, elapsed: float
) -> str:
    """Why the run ends now ('' while it goes on): the workload exits, the duration passes,
    or bpftrace itself exits."""
    if not proc.is_running():
        return "program-exit"
    if work is not None and work.poll() is not None:
        return "workload-exit"
    if duration is not None and elapsed >= duration:
        return "duration"
    # Neither bounds it: the program ends itself (exit()); a Ctrl-C now would cut off the
    # printf events it has not yet read from its perf buffer.
    return ""

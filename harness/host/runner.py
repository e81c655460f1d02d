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
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pexpect

from harness.errors import HarnessError
from harness.host.workload import GatedWorkload

if TYPE_CHECKING:
    from harness.output.model import Output

# "Attaching N probes..." before 0.24, "Attached N probes" from 0.24 on.
ATTACH_RE = re.compile(rb"Attach(?:ing|ed) (\d+) probes?")
# Lines bpftrace writes to stderr; the pty merges them with stdout, so they are split back here.
# A location is `stdin:L:C-C2:` or, for a diagnostic spanning lines, `stdin:L1-L2:`.
LOCATION = r"\S+?:\d+(?:[:-]\d+)*: "
DIAG_RE = re.compile(
    rf"^(?:{LOCATION})?(?:ERROR|WARNING|error|warning)\b.*$"
    r"|^create_probe_event: .*$"
    r"|^[Cc]ould not .*$"
)
STOP_GRACE = 10.0


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
        return BpftraceError(f"bpftrace failed: {_error_line(text)}", "see the diagnostics above")
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


@dataclass
class RunResult:
    """Everything one bpftrace run produced; `output` is None only when nothing parsed."""

    program: str
    stdout: str
    diagnostics: str
    exit_status: int | None
    interrupted: bool
    started: float
    attached: float | None
    stopped: float
    probes: int | None = None
    output: Output | None = None
    error: HarnessError | None = None
    workload_status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def time_to_attached(self) -> float | None:
        return None if self.attached is None else self.attached - self.started


class BpftraceProcess:
    """One bpftrace process in its own session on a pty."""

    def __init__(
        self,
        program: str,
        marker: str,
        *,
        bpftrace: str = "bpftrace",
        env: dict[str, str] | None = None,
        argv_prefix: Sequence[str] = (),
    ) -> None:
        self.program = program
        self.marker = marker
        self.bpftrace = bpftrace
        self.env = {**os.environ, **(env or {})}
        self.argv_prefix = list(argv_prefix)
        self.child: pexpect.spawn | None = None
        self.started = 0.0
        self.attached: float | None = None
        self.probes: int | None = None
        self._buf = b""

    def start(self) -> None:
        """Spawn bpftrace; the program goes on the command line so errors name `stdin:L:C`."""
        argv = [*self.argv_prefix, self.bpftrace, "-e", self.program]
        self.started = time.monotonic()
        try:
            self.child = pexpect.spawn(
                argv[0],
                argv[1:],
                env=self.env,
                timeout=None,
                maxread=1 << 20,
                echo=False,
                dimensions=(500, 500),
            )
        except pexpect.ExceptionPexpect as err:
            raise BpftraceError(
                f"cannot start {argv[0]}: {err}", "install bpftrace (scripts/setup.sh)"
            ) from None
        # close() sleeps this long "to let the kernel update the process status"; stop() has
        # already read to EOF and reaped bpftrace, so the default 0.1 s is pure wait per run.
        self.child.delayafterclose = 0.0

    def _read_until(self, regex: re.Pattern[bytes], deadline: float) -> bool:
        """Read into the buffer until the pattern appears; False on EOF or deadline."""
        assert self.child is not None
        while not regex.search(self._buf):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._buf += self.child.read_nonblocking(65536, timeout=min(left, 0.5))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return False
        return True

    def wait_attached(self, timeout: float = 60.0) -> None:
        """Block until the BEGIN marker shows that every probe is live, or raise a typed error."""
        deadline = time.monotonic() + timeout
        # The marker must be a line of its own: diagnostics echo the program text, marker included.
        marker_line = re.compile(rb"^" + re.escape(self.marker.encode()) + rb"\r?$", re.M)
        ok = self._read_until(ATTACH_RE, deadline) and self._read_until(marker_line, deadline)
        m = ATTACH_RE.search(self._buf)
        if m:
            self.probes = int(m.group(1))
        if ok:
            self.attached = time.monotonic()
            return
        assert self.child is not None
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

    def stop(self, grace: float = STOP_GRACE) -> RunResult:
        """SIGINT through the pty, read all output to EOF, kill the group if it lingers."""
        assert self.child is not None, "start() first"
        child = self.child
        interrupted = False
        if child.isalive():
            interrupted = True
            with contextlib.suppress(OSError):
                child.sendintr()
        # Read to EOF even when bpftrace already exited by itself: the pty still holds what it
        # printed last (its maps, late printf lines).
        self._drain(time.monotonic() + grace)
        if child.isalive():
            self._signal_group(signal.SIGTERM)
            self._drain(time.monotonic() + 3)
        if child.isalive():
            self._signal_group(signal.SIGKILL)
            self._drain(time.monotonic() + 3)
        child.close(force=True)
        status = (
            child.exitstatus
            if child.exitstatus is not None
            else (-child.signalstatus if child.signalstatus else None)
        )
        return self._result(status, interrupted)

    def _drain(self, deadline: float) -> None:
        assert self.child is not None
        while time.monotonic() < deadline:
            try:
                self._buf += self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                self.child.wait()
                return

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.child is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, sig)

    def _result(self, status: int | None, interrupted: bool) -> RunResult:
        text = self._buf.decode("utf-8", "replace").replace("\r\n", "\n")
        stdout, diagnostics = split_diagnostics(text)
        result = RunResult(
            program=self.program,
            stdout=stdout,
            diagnostics=diagnostics,
            exit_status=status,
            interrupted=interrupted,
            started=self.started,
            attached=self.attached,
            stopped=time.monotonic(),
            probes=self.probes,
        )
        if status not in (0, None) or self.attached is None:
            result.error = classify(diagnostics or stdout, self.program)
        from harness.output.parse import parse_text

        try:
            result.output = parse_text(_without_marker(stdout, self.marker))
        except HarnessError as err:
            result.error = result.error or err
        return result


def _without_marker(stdout: str, marker: str) -> str:
    return "\n".join(ln for ln in stdout.splitlines() if ln.strip() != marker) + "\n"


def run_bpftrace(
    program: str | Callable[[int | None], str],
    marker: str,
    *,
    workload: Sequence[str] | None = None,
    duration: float | None = None,
    timeout: float = 60.0,
    on_progress: Callable[[float], None] | None = None,
    bpftrace: str = "bpftrace",
) -> RunResult:
    """Run one program: attach, release the workload (or wait `duration`), stop, parse.

    `program` may be a function of the workload's pid, so filters can name it before it runs.
    The result always comes back, even when the run was cut short: `result.error` says why.
    `bpftrace` is the command to start (another release's wrapper, harness.host.bpftrace_versions).
    """
    work = GatedWorkload(workload) if workload else None
    proc: BpftraceProcess | None = None
    result: RunResult | None = None
    try:
        text = program(work.pid if work else None) if callable(program) else program
        proc = BpftraceProcess(text, marker, bpftrace=bpftrace)
        proc.start()
        proc.wait_attached(timeout)
        if work is not None:
            work.go()
        t0 = time.monotonic()
        while not _finished(proc, work, duration, time.monotonic() - t0):
            if on_progress is not None:
                on_progress(time.monotonic() - t0)
            time.sleep(0.05)
        result = proc.stop()
    except KeyboardInterrupt:
        if proc is not None and proc.child is not None:
            result = proc.stop()
            result.error = result.error or HarnessError(
                "interrupted by Ctrl-C", "partial results were kept"
            )
            return result
        raise
    finally:
        if proc is not None and proc.child is not None and proc.child.isalive():
            proc.stop()
        if work is not None:
            work.close()
    if work is not None:
        result.workload_status = work.wait(5)
        result.extra["workload_stdout"] = work.stdout
    return result


def _finished(
    proc: BpftraceProcess, work: GatedWorkload | None, duration: float | None, elapsed: float
) -> bool:
    """A run ends when the workload exits, the duration passes, or bpftrace itself exits.

    With neither a workload nor a duration the program ends itself (exit()): stopping it with
    Ctrl-C then would cut off the printf events it has not yet read from its perf buffer.
    """
    if proc.child is None or not proc.child.isalive():
        return True
    if duration is not None and elapsed >= duration:
        return True
    if work is not None:
        return work.poll() is not None
    return False

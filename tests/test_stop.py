"""Stopping bpftrace keeps every map it prints: a slow detach is waited for while bpftrace makes
progress, a stop it had to cut short is an error (never "no events"), and a Ctrl-C that lands
while bpftrace is already stopping does not kill it before its maps are out.

Each count is checked against the workload's own: `syscall_loop.py --count N` makes exactly N
getppid() calls."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.host import runner
from harness.host.parsed import run_bpftrace
from harness.host.runner import BpftraceTimeout, Interrupted
from harness.output.frames import to_frames

pytestmark = [pytest.mark.usefixtures("needs_bpf"), pytest.mark.kernel]

REPO = Path(__file__).resolve().parent.parent
LOOP = [sys.executable, str(REPO / "harness" / "workloads" / "syscall_loop.py"), "--count"]
MARK = "KTRACE_STOP_TEST"
# ~30 syscall tracepoints: bpftrace 0.17 detaches each in tens of milliseconds of waiting (not
# CPU), some seconds in all, before it prints anything (361 of them: ~27 s).
MANY = "tracepoint:syscalls:sys_enter_get*"


def _many_probes(pid: int | None) -> str:
    return (f'BEGIN {{ printf("{MARK}\\n"); }}\n'
            f"{MANY} /pid == {pid}/ {{ @calls[probe] = count(); }}\n")


def _getppid_calls(result: runner.RunResult) -> int:
    assert result.output is not None, result.stdout
    frame = to_frames(result.output)["@calls"]
    return int(frame.loc[frame["key0"] == "tracepoint:syscalls:sys_enter_getppid", "value"].sum())


def test_a_slow_detach_is_waited_for_while_bpftrace_closes_its_probes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Detaching uses almost no CPU and prints nothing, so an idle limit shorter than the
    detach once killed bpftrace before its maps (`sys_enter_*`: "no events", exit 0). Its
    probes closing one by one is its progress."""
    monkeypatch.setattr(runner, "STOP_GRACE", 0.6)
    result = run_bpftrace(_many_probes, MARK, workload=[*LOOP, "2000"])
    assert result.probes is not None and result.probes > 20, result.stdout
    assert result.extra["stop_s"] > runner.STOP_GRACE, "the detach was not slow: no test"
    assert "escalations" not in result.extra, result.warnings
    assert result.error is None, result.error
    assert _getppid_calls(result) == 2000


def test_a_stop_cut_short_is_an_error_not_an_empty_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When bpftrace had to be killed while stopping, the maps it would have printed are
    missing: the run is an error naming that (the CLI exits non-zero), not a result."""
    for name in ("STOP_GRACE", "STOP_CAP", "ESCALATION_WAIT"):
        monkeypatch.setattr(runner, name, 0.2)
    # A bpftrace that makes no progress at all (a hung detach): nothing it does counts.
    monkeypatch.setattr(runner.BpftraceProcess, "_progress_mark", lambda self: (0, 0, 0))
    result = run_bpftrace(_many_probes, MARK, workload=[*LOOP, "10"])
    assert result.extra.get("escalations"), "bpftrace stopped in time: no test"
    assert result.exit_status == -signal.SIGKILL, (result.exit_status, result.warnings)
    assert isinstance(result.error, BpftraceTimeout), result.error
    assert "maps" in str(result.error) and "stopping" in str(result.error)


def test_a_stop_before_the_probes_attached_says_nothing_was_gathered() -> None:
    """A stop that reaches a run while bpftrace is still attaching (a fleet member stopped
    early): bpftrace prints no map, and the run says it stopped before tracing started, never
    that partial results were kept (a member reported that with 0 maps)."""
    spawned: list[bool] = []
    result = runner.capture_bpftrace(
        _many_probes, MARK, workload=[*LOOP, "10"],
        on_spawn=lambda: spawned.append(True),
        stop_check=lambda: int(signal.SIGINT) if spawned else None,
    )
    assert spawned and result.attached is None, "bpftrace attached before the stop: no test"
    assert result.ended_by == "ctrl-c"
    assert isinstance(result.error, Interrupted)
    assert str(result.error) == "interrupted by Ctrl-C before tracing started; nothing was gathered"
    assert not [ln for ln in result.stdout.splitlines() if ln.startswith("@")], result.stdout


def _sigint_caught(pid: int) -> bool | None:
    """Whether bpftrace still catches SIGINT (None: gone). 0.17 restores the default, fatal
    action once its probes are detached, before it prints its maps."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGINT - 1)))


def test_a_ctrl_c_while_bpftrace_prints_its_maps_keeps_every_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workload has exited and bpftrace is printing 4000 keys when Ctrl-C reaches the
    harness: the harness goes on waiting (a second SIGINT would kill bpftrace mid-print) and
    keeps every key, the run marked interrupted."""
    n = 4000  # bpftrace's default map size is 4096 keys
    sent: list[float] = []
    procs: list[runner.BpftraceProcess] = []
    real_start = runner.BpftraceProcess.start

    def start(self: runner.BpftraceProcess) -> None:
        real_start(self)
        procs.append(self)

    monkeypatch.setattr(runner.BpftraceProcess, "start", start)
    main = threading.main_thread().ident
    assert main is not None

    def interrupt_while_printing() -> None:
        while not procs or procs[0].pid is None or procs[0].stop_requested is None:
            time.sleep(0.001)
        pid = procs[0].pid
        while (caught := _sigint_caught(pid)) is True:
            time.sleep(0.0005)
        if caught is False:  # printing its maps: a SIGINT now is fatal to bpftrace
            sent.append(time.monotonic())
            signal.pthread_kill(main, signal.SIGINT)

    watcher = threading.Thread(target=interrupt_while_printing, daemon=True)
    watcher.start()
    result = run_bpftrace(
        lambda pid: (f'BEGIN {{ printf("{MARK}\\n"); }}\n'
                     f"tracepoint:syscalls:sys_enter_getppid /pid == {pid}/ "
                     "{ @at[nsecs] = count(); }\n"),
        MARK, workload=[*LOOP, str(n)],
    )
    watcher.join(5)
    assert sent, "bpftrace printed before the watcher saw it: no test"
    assert isinstance(result.error, Interrupted), result.error
    assert result.exit_status == 0, (result.exit_status, result.warnings)
    assert result.output is not None
    frame = to_frames(result.output)["@at"]
    assert len(frame) == n and frame["value"].sum() == n


def test_harness_run_killed_while_stopping_says_so_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, run_cli: Any, tmp_path: Path,
) -> None:
    """`harness run 'sys_enter_*' -d 300ms` printed "no events" and exited 0 once bpftrace was
    killed in its long detach; a stop cut short is now an error, and stdout.txt is kept."""
    for name in ("STOP_GRACE", "STOP_CAP", "ESCALATION_WAIT"):
        monkeypatch.setattr(runner, name, 0.2)
    monkeypatch.setattr(runner.BpftraceProcess, "_progress_mark", lambda self: (0, 0, 0))
    said = run_cli("run", MANY, "--count-by", "comm", "-d", "300ms", "-q",
                   "--out", str(tmp_path / "r"))
    assert said.status != 0, said.out
    assert "no events" not in said.out
    assert "before it printed all its maps" in said.err.strip().splitlines()[-1], said.err
    assert MARK not in (tmp_path / "r" / "stdout.txt").read_text()  # the run's own marker
    assert (tmp_path / "r" / "stdout.txt").read_text().startswith("Attaching")

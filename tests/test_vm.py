"""VM lane: the seed's kprobe and the CO-RE crosscheck inside a real Debian 6.1 guest (TCG here)."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_reparses_to

import harness
from harness.cli import main
from harness.host.runner import RunRequest
from harness.lanes.debian import host_mirror
from harness.lanes.registry import get_lane
from harness.lanes.vm import VMError, VMLane, _rw_parent, lane_series
from harness.progress import Progress

REPO = Path(__file__).resolve().parent.parent


def vm_unavailable_reason() -> str | None:
    from conftest import bpf_unavailable_reason

    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (scripts/setup.sh installs it)"
    if shutil.which("vng", path=str(Path(sys.executable).parent)) is None:
        return "virtme-ng is not installed in this venv (pip install -e '.[vm]')"
    if shutil.which("apt-get") is None:
        return "not a Debian host: the VM lane fetches Debian kernels with apt-get"
    return bpf_unavailable_reason()


@pytest.fixture
def outdir() -> Iterator[Path]:
    """A results directory the guest can write (the guest's /tmp is its own)."""
    reason = vm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    path = _rw_parent() / f"test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_lane_names() -> None:
    assert lane_series("vm") == "6.1" and lane_series("vm:6.12") == "6.12"
    with pytest.raises(VMError, match="unknown lane 'guest'"):
        lane_series("guest")


def test_host_mirror_from_both_source_formats() -> None:
    assert host_mirror("Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\n") == (
        "http://m.example/debian"
    )
    assert host_mirror("deb [arch=amd64] http://m.example/debian/ bookworm main\n") == (
        "http://m.example/debian"
    )


@pytest.mark.vm
def test_seed_oneliner_counts_exact_sends_on_the_udp_sendmsg_stack(outdir: Path) -> None:
    n = 25
    workload = f"{sys.executable} {REPO}/harness/workloads/udp_send.py --no-wait --count {n}"
    argv = [
        "run",
        "kprobe:udp_send_skb { @[kstack] = count(); }",
        "--workload",
        workload,
        "--lane",
        "vm:6.1",
        "--out",
        str(outdir),
        "--timeout",
        "300",
    ]
    assert main(argv) == 0
    meta = json.loads((outdir / "run.json").read_text())
    assert meta["lane"]["release"].startswith("6.1.") and meta["lane"]["accel"] in ("kvm", "tcg")
    assert meta["capabilities"]["kprobes"] is True
    # The guest's clock gives attach and run times, the host's the parse time (it parses).
    assert meta["ended_by"] == "workload-exit" and meta["schema"]["version"] == 3
    assert all(isinstance(meta["durations"][k], float) for k in ("attach_s", "run_s", "parse_s"))
    stacks = pd.read_csv(outdir / "at.csv")
    on_sendmsg = stacks[stacks["kstack"].str.contains("udp_sendmsg+", regex=False)]
    assert on_sendmsg["value"].sum() == n  # the workload sent exactly n datagrams


@pytest.mark.vm
def test_the_same_guest_serves_a_second_run_with_the_catalog_kprobe(outdir: Path) -> None:
    first = get_lane("vm:6.1")
    t = harness.trace("ktrace", lane="vm:6.1", count=15, sizes="100", out=False, report=False)
    assert get_lane("vm:6.1") is first and t.meta.lane["boot_s"] == first.describe()["boot_s"]
    assert t.meta.attach == "kprobe"
    assert int(t.frames["@stacks"]["value"].sum()) == 15


@pytest.mark.vm
def test_crosscheck_passes_with_the_kprobe_and_the_host_built_object(outdir: Path) -> None:
    from harness.api.planner import resolve_spec
    from harness.compare.crosscheck import twin_program
    from harness.twin.build import build_twin

    x = harness.crosscheck("ktrace", lane="vm:6.1", count=40, out=outdir, timeout=300)
    assert x.passed, {name: v.diff for name, v in x.maps.items()}
    assert x.attach == "kprobe" and x.meta.kernel.startswith("6.1.")
    spec, *_ = resolve_spec("ktrace", None, "kprobe")
    assert x.bpf_obj_sha256 == build_twin(twin_program(spec).text).sha256
    assert set(x.meta.core_relocations) >= {"sk_buff.hash", "sk_buff.len"}
    assert json.loads((outdir / "verdict.json").read_text())["passed"] is True
    # The guest's raw stdout came back through the lane and re-reads to the compared frames.
    assert_reparses_to(outdir, x)


@pytest.mark.vm
def test_a_guest_that_does_not_boot_in_time_is_one_line(outdir: Path) -> None:
    lane = VMLane("6.1", boot_timeout=4)
    with pytest.raises(VMError) as info:
        lane.start()
    msg = str(info.value)
    assert "did not start its agent after" in msg and "console:" in msg and "\n" not in msg
    assert lane.proc is None  # qemu is gone

# --- boot progress: what the CLI draws (harness.cli.progress) while a guest boots ---


def _recorder(events: list[tuple[str, float | None, str]]) -> Progress:
    def record(phase: str, done: float | None = None, total: float | None = None,
               unit: str = "") -> None:
        events.append((phase, done, unit))

    return record


@pytest.mark.vm
def test_a_boot_reports_its_phases_with_elapsed_time(outdir: Path) -> None:
    """What the CLI draws during a boot: the kernel fetch, booting with its elapsed seconds,
    then ready with the boot time run.json records."""
    events: list[tuple[str, float | None, str]] = []
    lane = VMLane("6.1")
    try:
        lane.start(_recorder(events))
    finally:
        lane.close()
    phases = [p for p, _, _ in events]
    assert phases[0] == "fetching kernel 6.1"
    booting = [(d, u) for p, d, u in events if p == f"booting {lane.release} ({lane.accel})"]
    assert len(booting) >= 2 and all(u == "s" for _, u in booting)
    seconds = [d for d, _ in booting]
    assert seconds == sorted(seconds) and seconds[-1] is not None
    assert events[-1] == (f"guest {lane.release} ready", lane.boot_s, "s")
    assert lane.boot_s is not None and seconds[-1] <= lane.boot_s


def test_waiting_for_the_agent_reports_booting_then_ready(tmp_path: Path) -> None:
    """The boot wait's reports, without a guest: a process stands in for vng and writes
    ready.json as the guest's agent does, once the wait has reported booting twice."""
    import subprocess
    import time

    events: list[tuple[str, float | None, str]] = []
    record = _recorder(events)

    def progress(phase: str, done: float | None = None, total: float | None = None,
                 unit: str = "") -> None:
        record(phase, done, total, unit)
        if sum(p.startswith("booting") for p, _, _ in events) == 2:
            (tmp_path / "go").touch()

    lane = VMLane("6.1", boot_timeout=120)
    lane.dir, lane.release, lane.accel = tmp_path, "6.1.0-test", "tcg"
    agent = (f"cd {tmp_path} && while [ ! -e go ]; do sleep 0.05; done && "
             "echo '{\"kernel\": \"6.1.0-test\"}' > ready.tmp && mv ready.tmp ready.json && "
             "exec sleep 60")
    proc = lane.proc = subprocess.Popen(["sh", "-c", agent])
    try:
        lane.wait_ready(time.monotonic(), progress)
    finally:
        proc.kill()
        proc.wait()
        lane.proc = None
    booting, ready_phase = "booting 6.1.0-test (tcg)", "guest 6.1.0-test ready"
    assert [p for p, _, _ in events] == [booting, booting, ready_phase]
    (_, first, unit), (_, second, _), (_, ready, _) = events
    assert unit == "s" and first is not None and second is not None
    assert first < second <= ready == lane.boot_s
    assert lane.facts == {"kernel": "6.1.0-test"}


def test_a_boot_gives_up_when_a_fleet_interrupts_it(tmp_path: Path) -> None:
    """A fleet's `vm:S` member with no guest kept up boots a guest of its own; a Ctrl-C or
    SIGTERM lands in the fleet's main thread, which calls interrupt() on every lane. The boot
    wait (here a process that never gets ready stands in for vng) gives up within a poll, the
    process is gone without the 20 s wait for an agent that never started, and the member's
    call raises Interrupted with that signal (nothing was gathered). A cleared lane boots."""
    import signal
    import subprocess
    import threading
    import time

    from harness.host.runner import Interrupted

    lane = VMLane("6.1", boot_timeout=120)
    lane.dir, lane.release, lane.accel = tmp_path, "6.1.0-test", "tcg"
    proc = lane.proc = subprocess.Popen(["sleep", "120"], start_new_session=True)  # as spawn()
    stop = threading.Timer(0.5, lane.interrupt, [int(signal.SIGTERM)])
    stop.start()
    began = time.monotonic()
    try:
        with pytest.raises(Interrupted) as info:
            lane.wait_ready(began)
    finally:
        stop.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    took = time.monotonic() - began
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    assert took < 5, f"the boot took {took:.1f}s to give up"
    assert proc.poll() is not None and lane.proc is None  # the stand-in guest is gone
    with pytest.raises(Interrupted):  # while the stop holds, no request starts (or boots)
        lane.run_bpftrace("BEGIN { exit(); }", RunRequest("M"))
    assert lane.proc is None


@pytest.mark.vm
def test_a_closed_guest_boots_anew_and_stacks_use_the_new_kernels_symbols() -> None:
    """matrix closes each guest when its series is done; a later run on the same lane boots a
    new kernel whose addresses differ (KASLR): the twin's stacks must be symbolised with the new
    guest's kallsyms, not the closed one's (CI saw `mpls_gso_exit+252698044` frames)."""
    lane = get_lane("vm:6.1")
    lane.kallsyms()  # the first boot's symbols, cached in the lane
    lane.close()
    x = harness.crosscheck("ktrace", lane=lane, count=10, out=False, timeout=300)
    assert x.passed, {name: v.diff for name, v in x.maps.items()}
    frames = {f for stack in x.libbpf["@stacks"]["kstack"] for f in stack}
    assert any(f.startswith("udp_send_skb") for f in frames), sorted(frames)[:10]

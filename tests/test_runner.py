"""The pexpect runner against real bpftrace on this kernel: numbers, errors, clean stops."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.host import runner
from harness.host.runner import (
    BpftraceProcess,
    BpftraceSyntaxError,
    BpftraceTimeout,
    MissingKernelFeature,
    NotRoot,
    UnknownField,
    UnknownProbe,
    run_bpftrace,
)

pytestmark = pytest.mark.usefixtures("needs_bpf")

REPO = Path(__file__).resolve().parent.parent
UDP_SEND = str(REPO / "harness" / "workloads" / "udp_send.py")
MARK = "KTRACE_TEST_READY"


def udp_program(pid: int | None) -> str:
    return (
        f'BEGIN {{ printf("{MARK}\\n"); }}\n'
        f"tracepoint:net:net_dev_queue /pid == {pid}/ {{\n"
        "  @stacks[kstack] = count();\n"
        "  @len = hist(args->len);\n"
        "}\n"
    )


def test_exact_datagram_count_on_udp_send_skb_stack() -> None:
    n = 37
    result = run_bpftrace(
        udp_program,
        MARK,
        workload=[sys.executable, UDP_SEND, "--no-wait", "--count", str(n), "--sizes", "100"],
        timeout=60,
    )
    assert result.error is None, result.error
    assert result.workload_status == 0
    assert result.probes == 2
    maps = {m.name: m for m in result.output.maps}
    from harness.output.frames import to_frames

    frames = to_frames(result.output)
    stacks = frames["@stacks"]
    on_udp = stacks[stacks["key0"].map(lambda s: any(f.startswith("udp_send_skb") for f in s))]
    assert on_udp["value"].sum() == n
    assert "@len" in maps
    # 100-byte payload + UDP 8 + IP 20 + Ethernet 14 = 142 bytes: every send in [128, 256).
    hist = frames["@len"]
    nonzero = hist[hist["count"] > 0]
    assert list(zip(nonzero["lo"], nonzero["hi"], nonzero["count"], strict=True)) == [(128, 256, n)]


def test_syntax_error_names_line_and_column() -> None:
    with pytest.raises(BpftraceSyntaxError) as info:
        run_bpftrace(
            f'BEGIN {{ printf("{MARK}\\n"); }}\ntracepoint:net:net_dev_queue {{ @x = count( }}',
            MARK,
        )
    assert (info.value.line, info.value.column) == (2, 44)
    assert "line 2, column 44" in str(info.value) and "\n" not in str(info.value)


def test_unknown_probe() -> None:
    with pytest.raises(UnknownProbe, match="net:no_such_tracepoint"):
        run_bpftrace("tracepoint:net:no_such_tracepoint { @ = count(); }", MARK)


def test_unknown_struct_field() -> None:
    prog = "tracepoint:net:net_dev_queue { @ = ((struct sk_buff *)args->skbaddr)->hashh; }"
    with pytest.raises(UnknownField, match="'hashh'"):
        run_bpftrace(prog, MARK)


def test_not_root() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    proc = BpftraceProcess(
        f'BEGIN {{ printf("{MARK}\\n"); }}',
        MARK,
        argv_prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    )
    proc.start()
    with pytest.raises(NotRoot, match="root"):
        proc.wait_attached(30)


def test_kprobe_missing_on_this_kernel_is_a_kernel_feature_error() -> None:
    from harness.host.capabilities import capabilities

    if capabilities().kprobes:
        pytest.skip("this kernel has kprobes; the error cannot be triggered here")
    with pytest.raises(MissingKernelFeature, match="kprobes"):
        run_bpftrace(
            f'BEGIN {{ printf("{MARK}\\n"); }} kprobe:udp_send_skb {{ @ = count(); }}', MARK
        )


def test_attach_timeout_when_marker_never_comes() -> None:
    proc = BpftraceProcess("tracepoint:net:net_dev_queue { @ = count(); }", MARK)
    proc.start()
    pid = proc.child.pid
    with pytest.raises(BpftraceTimeout, match="did not attach within 3s"):
        proc.wait_attached(3)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _progs_of(pid: int) -> set[int]:
    """IDs of the BPF programs a process holds open (from its fds' fdinfo)."""
    ids = set()
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = fdinfo.read_text()
        except OSError:
            continue
        ids |= {int(m) for m in re.findall(r"^prog_id:\s+(\d+)$", text, re.M)}
    return ids


def _loaded_prog_ids() -> set[int]:
    out = subprocess.run(
        ["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True
    )
    return {p["id"] for p in json.loads(out.stdout)}


def test_stop_leaves_no_process_and_no_program() -> None:
    proc = BpftraceProcess(udp_program(1), MARK)
    proc.start()
    proc.wait_attached(60)
    pid = proc.child.pid
    progs = _progs_of(pid)
    assert progs and progs <= _loaded_prog_ids(), "bpftrace holds its loaded programs"
    result = proc.stop()
    assert result.interrupted and result.exit_status == 0
    assert not _alive(pid)
    assert progs.isdisjoint(_loaded_prog_ids())


def test_partial_output_kept_when_cut_short_by_duration() -> None:
    """A workload that outlives --duration is cut; what bpftrace counted so far is parsed."""
    prog = (
        f'BEGIN {{ printf("{MARK}\\n"); }}\n'
        "tracepoint:syscalls:sys_enter_clock_nanosleep /pid == PID/ { @naps = count(); }\n"
    )
    sleeper = [sys.executable, "-c", "import time\nwhile True: time.sleep(0.05)"]
    t0 = time.monotonic()
    result = run_bpftrace(
        lambda pid: prog.replace("PID", str(pid)), MARK, workload=sleeper, duration=1.5
    )
    assert time.monotonic() - t0 < 30
    assert result.interrupted
    naps = [m for m in result.output.maps if m.name == "@naps"]
    assert naps, result.stdout
    from harness.output.frames import to_frames

    assert to_frames(result.output)["@naps"]["value"].iloc[0] >= 5


def test_classify_keeps_unknown_errors_one_line() -> None:
    err = runner.classify("ERROR: something new went wrong\nmore detail\n")
    assert err is not None and str(err).startswith("bpftrace failed: something new went wrong")
    assert "\n" not in str(err)

"""bpftrace 0.17 (the system's) and 0.27 (a Debian forky root): the same specs, live, on both.

Every catalog entry the host can attach and every spec form runs under each version around the
same deterministic workload; the counts are checked against what the workload did, and the
frames of the two versions against each other. The kprobe forms run in the VM lane (test_vm).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.host import bpftrace_versions as bv
from harness.host.parsed import run_bpftrace
from harness.host.runner import BpftraceProcess, RunResult
from harness.output.frames import to_frames
from harness.spec import catalog, codegen
from harness.spec.model import ProbeSpec

REPO = Path(__file__).resolve().parent.parent
UDP_SEND = str(REPO / "harness" / "workloads" / "udp_send.py")
SIZES = (1, 100, 1000)
N = 12  # datagrams: 4 of each size
VERSIONS = ["system", "0.27"]


# -- pure -------------------------------------------------------------------------------------


def test_names_and_aliases() -> None:
    assert bv.canonical(None) == bv.canonical("") == "system"
    assert bv.canonical("latest") == bv.canonical("v0.27") == "0.27"
    assert bv.split_names(" 0.17, 0.27 ,") == ["0.17", "0.27"]
    with pytest.raises(bv.BpftraceVersionError, match=r"e\.g\. --bpftrace 0\.17,0\.27"):
        bv.split_names(" , ")
    assert bv._matches("0.17.0", "0.17") and bv._matches("0.17.0", "0.17.0")
    assert not bv._matches("0.17.0", "0.1")


def test_bpftrace_reports_its_version_tuple() -> None:
    found = bv.Bpftrace("0.27", "/x/bpftrace", "bpftrace v0.27.0", "a root", "/x/root")
    assert found.version == (0, 27, 0) and found.short_version == "0.27.0"
    assert found.as_dict()["root"] == "/x/root"


def test_wrapper_binds_in_a_private_namespace_and_chroots() -> None:
    text = bv.WRAPPER.format(version="0.27", suite="forky")
    assert "unshare --mount --propagation private" in text
    assert 'exec chroot "$0" /usr/bin/bpftrace "$@"' in text


# -- live -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=VERSIONS)
def bpftrace(request: pytest.FixtureRequest) -> bv.Bpftrace:
    from tests.conftest import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return bv.resolve(request.param)


def test_unknown_version_names_the_choices() -> None:
    with pytest.raises(bv.BpftraceVersionError, match=r"choose one of: system, .*0\.27, latest"):
        bv.resolve("0.3")


def test_resolved_versions_are_what_they_say(bpftrace: bv.Bpftrace) -> None:
    assert bpftrace.version >= ((0, 27, 0) if bpftrace.name == "0.27" else (0, 17, 0))
    assert bv.resolve(bpftrace.short_version).version == bpftrace.version


def _udp(n: int = N) -> list[str]:
    return [sys.executable, UDP_SEND, "--no-wait", "--count", str(n), "--sizes",
            ",".join(map(str, SIZES))]


def _run(spec: ProbeSpec, bpftrace: bv.Bpftrace, workload: list[str]) -> RunResult:
    marker = "VERSIONS_MK"
    result = run_bpftrace(
        lambda pid: codegen.generate(spec, None, bpftrace.version, marker, pid=pid),
        marker,
        workload=workload,
        bpftrace=bpftrace.command,
        timeout=120,
    )
    assert result.error is None, f"{bpftrace.name}: {result.error}\n{result.program}"
    assert result.workload_status == 0
    assert result.output is not None
    return result


def _every_form() -> ProbeSpec:
    """One tracepoint spec using every aggregation, keys, a free filter and the pid filter."""
    from tests.test_codegen import line

    return line(
        "tracepoint:net:net_dev_queue",
        "--count-by", "comm,kstack",
        "--sum", "args.len", "--avg", "args.len", "--min", "args.len", "--max", "args.len",
        "--stats", "args.len", "--hist", "args.len", "--lhist", "args.len:0:1200:100",
        "--collect", "args.len",
        "--by", "cpu - cpu",
        "--filter", "args.len > 0",
        "--workload-pid",
    )


@pytest.mark.kernel
def test_every_spec_form_counts_the_workload_exactly(bpftrace: bv.Bpftrace) -> None:
    spec = _every_form()
    frames = to_frames(_run(spec, bpftrace, _udp()).output, spec.key_names())  # type: ignore[arg-type]
    wire = [s + 42 for s in SIZES]  # UDP + IPv4 + Ethernet headers on loopback
    total = sum(wire) * N // len(SIZES)
    assert frames["@count"]["value"].sum() == N
    assert set(frames["@count"]["comm"]) == {"python"}
    assert frames["@sum"]["value"].tolist() == [total]
    assert frames["@min"]["value"].tolist() == [min(wire)]
    assert frames["@max"]["value"].tolist() == [max(wire)]
    assert frames["@avg"]["value"].tolist() == [total // N]
    assert frames["@stats"][["count", "average", "total"]].values.tolist() == [
        [N, total // N, total]
    ]
    assert frames["@hist"]["count"].sum() == N == frames["@lhist"]["count"].sum()
    collected = frames["@collect"].set_index("len")["value"].to_dict()
    assert collected == {w: N // len(SIZES) for w in wire}


@pytest.mark.kernel
@pytest.mark.parametrize(
    "name", [n for n in catalog.names() if catalog.get(n).workload]  # profiles: test_profiles
)
def test_catalog_entry_tracepoint_form(name: str, bpftrace: bv.Bpftrace) -> None:
    entry = catalog.get(name)
    spec = entry.equivalents["tracepoint"]
    workload = entry.workload_argv(N, ",".join(map(str, SIZES)))
    assert workload is not None
    frames = to_frames(_run(spec, bpftrace, workload).output, spec.key_names())  # type: ignore[arg-type]
    for frame in frames.values():
        total = frame["value" if "value" in frame.columns else "count"].sum()
        assert total == N


def _same_frames(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame], skip: set[str]) -> None:
    assert set(a) == set(b)
    for name in set(a) - skip:
        left = a[name].sort_values(list(a[name].columns)).reset_index(drop=True)
        right = b[name].sort_values(list(b[name].columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, obj=name)


@pytest.mark.kernel
def test_both_versions_give_equal_frames_for_the_same_workload() -> None:
    spec = _every_form()
    frames = [
        to_frames(_run(spec, bv.resolve(v), _udp()).output, spec.key_names())  # type: ignore[arg-type]
        for v in VERSIONS
    ]
    _same_frames(frames[0], frames[1], skip=set())


# -- the root's mounts ------------------------------------------------------------------------


def _mount_points(pid: int | str) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/mounts").read_text()
    except OSError:  # the process is gone
        return []
    return [line.split()[1] for line in text.splitlines()]


@pytest.mark.kernel
def test_no_bind_mount_survives_sigkill_of_a_027_run() -> None:
    bt = bv.resolve("0.27")
    assert bt.root is not None
    marker = "KILL_MK"
    program = f'BEGIN {{ printf("{marker}\\n"); }} interval:s:1 {{ @ticks = count(); }}'
    proc = BpftraceProcess(program, marker, bpftrace=bt.command)
    namespace = ""
    proc.start()
    try:
        proc.wait_attached(60)
        assert proc.child is not None
        pid = proc.child.pid
        namespace = os.readlink(f"/proc/{pid}/ns/mnt")
        # bpftrace runs chrooted into the root, in its own mount namespace holding the binds
        # (its mount table reads relative to its root); the harness's table has none of them.
        assert os.readlink(f"/proc/{pid}/root") == bt.root
        assert namespace != os.readlink("/proc/self/ns/mnt")
        assert {"/proc", "/sys", "/dev", "/tmp"} <= set(_mount_points(pid))
        assert not [m for m in _mount_points("self") if m.startswith(bt.root)]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while proc.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.child.isalive()
    finally:
        result = proc.stop()
    assert result.exit_status == -signal.SIGKILL
    holders = [
        p.name for p in Path("/proc").iterdir()
        if p.name.isdigit() and (
            any(m.startswith(bt.root) for m in _mount_points(p.name))
            or _namespace(p.name) == namespace
        )
    ]
    assert holders == []  # the namespace, and the binds with it, died with bpftrace
    assert bt.root not in Path("/proc/mounts").read_text()


def _namespace(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


# -- the API and the CLI ----------------------------------------------------------------------


@pytest.mark.kernel
def test_api_trace_counts_exactly_alike_on_both_versions() -> None:
    import harness

    traces = [harness.trace("ktrace", bpftrace=v, count=N, out=False) for v in ("0.17", "latest")]
    assert [t.meta.bpftrace["name"] for t in traces] == ["system", "0.27"]
    assert "args.skbaddr" in traces[1].meta.program  # type: ignore[operator]
    for name in ("@stacks", "@len"):
        _same_frames({name: traces[0].frames[name]}, {name: traces[1].frames[name]}, set())
    hashes = [t.frames["@hash"]["value"].sort_values().tolist() for t in traces]
    assert hashes[0] == hashes[1] and sum(hashes[0]) == N  # skb->hash values differ per run


def test_doctor_lists_the_releases_and_where_they_come_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from harness.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "bpftrace releases (--bpftrace NAME):" in out
    assert "0.27 (latest)" in out and "Debian forky" in out
    assert "system (" in out


def test_run_refuses_an_unknown_version_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["run", "ktrace", "--bpftrace", "9.9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no bpftrace '9.9' here; choose one of:" in err


@pytest.mark.kernel
def test_bench_row_for_027_counts_every_event(tmp_path: Path) -> None:
    import csv as csv_module

    from harness.cli import main

    rc = main(["bench", "ktrace", "--bpftrace", "0.27", "--rounds", "1", "--warmup", "0",
               "--events", "300", "--modes", "bpftrace", "--no-report", "-q",
               "--out", str(tmp_path)])
    assert rc == 0
    rows = list(csv_module.DictReader((tmp_path / "ktrace-bpftrace0.27.0.csv").open()))
    traced = [r for r in rows if r["mode"] == "bpftrace"]
    assert traced and all(r["bpftrace_version"] == "bpftrace v0.27.0" for r in rows)
    assert [r["events_counted"] for r in traced] == ["300"]

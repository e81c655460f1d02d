"""The libbpf CO-RE twin: real clang/bpftool/cc builds, real loads on this kernel."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from twin_example import EXAMPLE, example  # the hand-written twin, a fixture

from harness.host.symbols import Kallsyms
from harness.host.workload import GatedWorkload
from harness.twin.build import BuildError, build, target_arch
from harness.twin.generic import slot_bounds
from harness.twin.loader import LoaderError

REPO = Path(__file__).resolve().parent.parent
UDP_SEND = str(REPO / "harness" / "workloads" / "udp_send.py")


@pytest.fixture(scope="module")
def twin() -> object:
    for tool in ("clang", "bpftool", "cc", "pkg-config"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (run scripts/setup.sh)")
    return build(EXAMPLE)


def test_build_is_cached_by_inputs(twin: object, tmp_path: Path) -> None:
    again = build(EXAMPLE)
    assert again == twin
    assert again.arch_define == f"-D__TARGET_ARCH_{target_arch()}"
    # A changed source is a different build.
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__*"))
    (src / "ktrace.h").write_text((src / "ktrace.h").read_text() + "\n/* changed */\n")
    changed = build(src)
    assert changed.loader != again.loader and changed.loader.exists()


def test_missing_arch_define_is_the_seed_gotcha(twin: object) -> None:
    with pytest.raises(BuildError) as info:
        build(EXAMPLE, arch=None)
    msg = str(info.value)
    assert f"-D__TARGET_ARCH_{target_arch()}" in msg and "\n" not in msg


def test_missing_header_is_one_line(twin: object, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__*"))
    bpf_c = src / "ktrace.bpf.c"
    bpf_c.write_text(bpf_c.read_text().replace('"ktrace.h"', '"no_such_header.h"'))
    expected = r"header 'no_such_header\.h' not found; install libbpf-dev"
    with pytest.raises(BuildError, match=expected):
        build(src)


def test_unknown_machine_arch() -> None:
    with pytest.raises(BuildError, match="no BPF target arch known for machine 'vax'"):
        target_arch("vax")


def test_slots_follow_bpftrace_log2_buckets() -> None:
    assert slot_bounds(0) == (None, 0)
    assert slot_bounds(1) == (0, 1)
    assert slot_bounds(2) == (1, 2)
    assert slot_bounds(9) == (128, 256)


def test_kallsyms_symbolizes_like_kstack() -> None:
    syms = Kallsyms("ffffffff81000000 T _stext\nffffffff81000100 t foo\nffffffff81000200 T bar\n")
    assert syms.symbolize(0xFFFFFFFF81000105) == "foo+5"
    assert syms.symbolize(0xFFFFFFFF81000200) == "bar+0"


@pytest.mark.usefixtures("needs_bpf")
def test_tracepoint_twin_counts_exact_sends(twin: object) -> None:
    n = 12
    work = GatedWorkload(
        [
            sys.executable,
            UDP_SEND,
            "--no-wait",
            "--count",
            str(n),
            "--sizes",
            "1,1000",
            "--sockets",
            "3",
        ]
    )
    proc = example.start(twin.loader, "tracepoint", work.pid)  # type: ignore[attr-defined]
    proc.wait_attached(30)
    work.go()
    assert work.wait(30) == 0
    dumps, _ = proc.stop()
    frames = example.frames(dumps)
    # 1 and 1000 payload bytes are 43 and 1042 on the wire: [32, 64) and [1024, 2048)
    hist = frames["@len"]
    assert hist[["lo", "hi", "count"]].values.tolist() == [[32, 64, 6], [1024, 2048, 6]]
    assert len(frames["@hash"]) == 3 and frames["@hash"]["value"].sum() == n  # 3 sockets
    ((stack, count),) = frames["@stacks"][["kstack", "value"]].values.tolist()
    assert count == n and any(f.startswith("udp_send_skb+") for f in stack)


@pytest.mark.usefixtures("needs_bpf")
def test_kprobe_on_a_kernel_without_kprobes_is_one_line(twin: object) -> None:
    from harness.host.capabilities import capabilities

    if capabilities().kprobes:
        pytest.skip("this kernel has kprobes")
    proc = example.start(twin.loader, "kprobe", None)  # type: ignore[attr-defined]
    with pytest.raises(LoaderError, match="kprobes are not built into this kernel"):
        proc.wait_attached(30)

"""A matrix of specs, each cross-checked exactly against its generated libbpf twin.

Together the host rows cover the probe kinds this kernel offers (tracepoint, uprobe, uretprobe),
every aggregation (count, sum, min, max, avg, stats, hist, lhist, collect), every key kind
(kstack, ustack, comm, pid, tid, cpu, retval, integer expressions, tuples), negative values and
open lhist ends, and every filter (workload pid, --comm, --cgroup, predicates with && || !).
The VM rows run the kernel-function kinds (kprobe, kretprobe, kfunc, kretfunc) in a 6.1 guest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from spec_lines import line

from harness.api.crosscheck import run_crosscheck
from harness.cli import main
from harness.compare.maps import compare_map
from harness.paths import workload
from harness.spec.model import Agg, ProbeSpec
from harness.workloads.native import build

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
NDQ = "tracepoint:net:net_dev_queue"
GETPPID = "tracepoint:syscalls:sys_enter_getppid"


def loop_comm() -> str:
    binary = build(workload("syscall_loop.c"))
    assert binary is not None
    return binary.name[:15]  # the kernel keeps 15 bytes of the command name


def cgroup2_root() -> Path:
    for row in Path("/proc/mounts").read_text().splitlines():
        _dev, mnt, fstype, *_ = row.split()
        if fstype == "cgroup2":
            return Path(mnt)
    pytest.skip("no cgroup v2 mount")


def own_cgroup() -> str:
    rel = Path("/proc/self/cgroup").read_text().split("0::", 1)[1].split()[0]
    return str(cgroup2_root()) + rel.rstrip("/")


@pytest.fixture
def in_own_cgroup() -> Iterator[str]:
    """This process (and so the workload it starts) in a fresh cgroup v2 leaf, for --cgroup
    (bpftrace cannot take the root cgroup's id)."""
    before = own_cgroup()
    leaf = cgroup2_root() / f"ktrace-twin-test-{os.getpid()}"
    leaf.mkdir()
    try:
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        yield str(leaf)
    finally:
        # Back out with every process started in the leaf that outlives the test (the
        # harness's watchdog helper lives as long as this process when a test starts it).
        for _ in range(100):
            pids = (leaf / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(OSError):  # one that exited meanwhile
                    (Path(before) / "cgroup.procs").write_text(pid)
            try:
                leaf.rmdir()
                break
            except OSError:  # a dying task keeps the leaf populated for a moment
                time.sleep(0.05)
        else:
            leaf.rmdir()


HOST_SPECS: dict[str, tuple[str, ...]] = {
    "getppid-comm-hist": (GETPPID, "--count-by", "comm", "--hist", "args.__syscall_nr"),
    "ndq-value-aggregations": (
        NDQ, "--sum", "args.len", "--min", "args.len", "--max", "args.len", "--avg", "args.len",
        "--stats", "args.len", "--by", "comm",
    ),
    "ndq-lhist-pid-tid": (NDQ, "--lhist", "args.len:0:2000:100", "--by", "pid", "--by", "tid"),
    "ndq-cpu-expr-filter": (
        NDQ, "--count-by", "cpu", "--count-by", "args.len / 100",
        "--filter", "args.len > 100 && args.len != 1042",
    ),
    "ndq-negative-hist-lhist": (
        NDQ, "--hist", "0 - args.len", "--lhist", "1000 - args.len:0:1500:250",
    ),
    "ndq-collect-not-or": (
        NDQ, "--collect", "args.len % 7", "--filter", '!(args.len < 50) || comm == "nope"',
    ),
    "ndq-cast-btf-tuple": (
        NDQ, "--collect", "((struct sk_buff *)args.skbaddr)->hash",
        "--max", "((struct sk_buff *)args.skbaddr)->len", "--by", "comm", "--by", "args.len & 3",
    ),
    "uprobe-ustack-arg": (f"uprobe:{LIBC}:syscall", "--count-by", "ustack", "--hist", "arg0"),
    "uprobe-comm-tid-stats": (
        f"uprobe:{LIBC}:syscall", "--comm", "{comm}", "--count-by", "tid", "--stats", "arg0",
    ),
    "uretprobe-retval": (f"uretprobe:{LIBC}:syscall", "--count-by", "retval"),
    "getppid-cgroup-kstack": (
        GETPPID, "--cgroup", "{cgroup}", "--count-by", "kstack", "--count-by", "comm",
    ),
    # print modes and frame limits: one stack-trace map per limit, as bpftrace keeps them
    "getppid-stack-modes-limits": (
        GETPPID, "--cgroup", "{cgroup}", "--count-by", "kstack(perf, 3)", "--count-by", "comm",
        "--sum", "1", "--by", "ustack(2)", "--by", "kstack(4)",
    ),
}


def filled(argv: tuple[str, ...]) -> ProbeSpec:
    values = {"{comm}": loop_comm(), "{cgroup}": own_cgroup()}
    probe, *rest = (values.get(a, a) for a in argv)
    return line(probe, *rest)


def assert_exact(x: object) -> None:
    """Passed, nothing dropped, and every map holds events on both sides (nothing vacuous)."""
    assert x.passed, {c.map_name: c.diff[:5] for c in x.comparisons if not c.equal}  # type: ignore[attr-defined]
    assert x.meta.libbpf_lost == 0  # type: ignore[attr-defined]
    for c in x.comparisons:  # type: ignore[attr-defined]
        assert c.bpftrace_rows > 0 and c.libbpf_rows > 0, c.map_name


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("name", sorted(HOST_SPECS))
def test_host_spec_crosschecks_exactly(name: str, request: pytest.FixtureRequest) -> None:
    if "{cgroup}" in HOST_SPECS[name]:
        request.getfixturevalue("in_own_cgroup")
    x = run_crosscheck(spec=filled(HOST_SPECS[name]), count=60, sizes="1,100,1000,1400")
    assert_exact(x)


@pytest.mark.usefixtures("needs_bpf", "in_own_cgroup")
def test_raw_stack_keys_crosscheck_under_027() -> None:
    """bpftrace 0.20+ prints `kstack(raw)` frames as bare addresses on unindented lines; the
    twin's frames are the same addresses, so every map is exact against 0.27's."""
    spec = filled((GETPPID, "--cgroup", "{cgroup}", "--count-by", "kstack(raw)",
                   "--max", "1", "--by", "ustack(raw, 3)", "--by", "kstack(perf)"))
    x = run_crosscheck(spec=spec, count=60, sizes="1,100", bpftrace="0.27")
    assert_exact(x)
    frames = x.bpftrace_frames["@count"]["kstack"]
    assert all(re.fullmatch(r"ffff[0-9a-f]{12}", f) for stack in frames for f in stack)


@pytest.mark.usefixtures("needs_bpf")
def test_ktrace_crosschecks_with_the_generated_twin() -> None:
    x = run_crosscheck("ktrace", count=40)
    assert_exact(x)
    assert "BPF_CORE_READ" in x.meta.twin_c


@pytest.mark.usefixtures("needs_bpf")
def test_two_cpus_inserting_the_same_new_keys_lose_nothing() -> None:
    """Two threads on two CPUs call getpgid(k) in lockstep for 1500 new keys k: every key must
    count 2 on both sides (a BPF_NOEXIST insert that loses the race is retried, not dropped)."""
    n = 1500
    race = build(workload("race_keys.c"), ("-pthread",))
    assert race is not None
    spec = line("tracepoint:syscalls:sys_enter_getpgid", "--count-by", "args.pid")
    x = run_crosscheck(spec=spec, workload_argv=[str(race), "--count", str(n)])
    assert_exact(x)
    for frame in (x.bpftrace_frames["@count"], x.libbpf_frames["@count"]):
        assert len(frame) == n and set(frame["value"]) == {2}


def test_an_injected_difference_is_caught_and_shown() -> None:
    """One event moved between two buckets of one side: the map differs, both rows shown."""
    agg = Agg("@len", "hist", value="args.len", keys=("comm",))
    left = pd.DataFrame({"comm": ["a", "a"], "lo": pd.array([64, 128], dtype="Int64"),
                         "hi": pd.array([128, 256], dtype="Int64"), "count": [5, 3]})
    right = left.assign(count=[4, 4])
    c = compare_map(agg, "hist", left, right)
    assert not c.equal
    assert c.diff == [("a, [128, 256)", 3, 4), ("a, [64, 128)", 5, 4)]
    assert list(c.diff_frame().columns) == ["key", "bpftrace", "libbpf"]


@pytest.mark.usefixtures("needs_bpf")
def test_a_twin_watching_another_pid_is_caught_per_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Past pid_max: no process can have that pid (pid + 1, on a busy machine, was another
    # test's process sending packets, and the twin counted them)
    beyond = int(Path("/proc/sys/kernel/pid_max").read_text())
    argv = ["crosscheck", *HOST_SPECS["ndq-value-aggregations"], "--count", "20",
            "--libbpf-pid-offset", str(beyond), "--out", str(tmp_path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert out.count("DIFFER") == 5 and "FAIL" in out
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    stats = next(m for m in verdict["maps"] if m["map"] == "@stats")
    assert [row[0].endswith(("(count)", "(average)", "(total)")) for row in stats["diff"]] == [
        True, True, True
    ]


VM_SPECS: dict[str, tuple[str, ...]] = {
    "kprobe-ktrace-line": (
        "kprobe:udp_send_skb", "--arg", "skb=struct sk_buff *", "--count-by", "kstack",
        "--collect", "skb->hash", "--hist", "skb->len",
    ),
    "kretprobe-retval": ("kretprobe:udp_send_skb", "--count-by", "retval", "--count-by", "comm"),
    "kfunc-args": (
        "kfunc:udp_send_skb", "--arg", "skb=struct sk_buff *", "--lhist",
        "args.skb->len:0:1600:200", "--by", "cpu",
    ),
    "kretfunc-retval": ("kretfunc:udp_send_skb", "--stats", "retval"),
}


@pytest.mark.vm
@pytest.mark.parametrize("name", sorted(VM_SPECS))
def test_vm_spec_crosschecks_exactly_in_a_61_guest(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["crosscheck", *VM_SPECS[name], "--count", "30", "--lane", "vm:6.1",
            "--out", str(tmp_path)]
    rc = main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["passed"] and verdict["attach"] == VM_SPECS[name][0].split(":")[0]

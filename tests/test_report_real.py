"""report.summary over run directories made the real way: bpftrace text -> parser -> frames ->
report.rundir.write_run_dir, from a capture made on this host and from a live bpftrace run."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.output.frames import to_frames
from harness.output.parse import parse_text
from harness.report.rundir import write_run_dir
from harness.report.summary import write_report

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parent.parent

# bpftrace 0.17 on this host: tracepoint:net:net_dev_queue { @stacks[kstack] = count();
# @len = hist(args->len); } around 50 loopback UDP sends of 1..981 bytes.
CAPTURE = """Attaching 3 probes...


@len:
[32, 64)               2 |@@@@                                                |
[64, 128)              3 |@@@@@@                                              |
[128, 256)             6 |@@@@@@@@@@@@                                        |
[256, 512)            13 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
[512, 1K)             26 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@stacks[
    __dev_queue_xmit+1158
    ip_finish_output2+705
    ip_output+95
    ip_send_skb+145
    udp_send_skb+423
    udp_sendmsg+2534
    __sys_sendto+450
    __x64_sys_sendto+32
    do_syscall_64+113
    entry_SYSCALL_64_after_hwframe+118
]: 50

""".replace("@len:\n", "@len: \n")  # bpftrace prints a trailing space
ROOT_FIRST = (
    "entry_SYSCALL_64_after_hwframe+118;do_syscall_64+113;__x64_sys_sendto+32;__sys_sendto+450;"
    "udp_sendmsg+2534;udp_send_skb+423;ip_send_skb+145;ip_output+95;ip_finish_output2+705;"
    "__dev_queue_xmit+1158"
)
# The folded line: the same frames, each marked `_[k]` as a kernel frame (flamegraph.pl's suffix).
ROOT_FIRST = ";".join(f + "_[k]" for f in ROOT_FIRST.split(";"))


def test_captured_run_reports_folded_and_hist(tmp_path: Path) -> None:
    run_dir = write_run_dir(
        tmp_path / "cap", to_frames(parse_text(CAPTURE)), {"attach": "tracepoint"}
    )
    written = {p.name for p in write_report(run_dir)}
    assert {"stacks.folded", "stacks.flame.html", "len.hist.png", "summary.md"} <= written
    assert (run_dir / "stacks.folded").read_text() == f"{ROOT_FIRST} 50\n"
    assert "udp_send_skb+423" in (run_dir / "stacks.flame.html").read_text()
    assert (run_dir / "len.hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| [len.csv](len.csv) | hist | 5 | 50 |" in (run_dir / "summary.md").read_text()


def test_kernel_and_user_stacks_in_one_key_fold_user_first(tmp_path: Path) -> None:
    # @k[kstack, 5, ustack]: a parser sample made with bpftrace 0.17 on this host
    text = (DATA / "samples" / "mixed_0.17.txt").read_text()
    run_dir = write_run_dir(tmp_path / "mixed", to_frames(parse_text(text)), {})
    write_report(run_dir)
    (line,) = (run_dir / "k.folded").read_text().splitlines()
    frames, count = line.rsplit(" ", 1)
    parts = frames.split(";")
    assert count == "1"
    assert parts[0] == "5"  # the non-stack key is the root-most frame
    assert parts.index("syscall+25") < parts.index("entry_SYSCALL_64_after_hwframe+118_[k]")
    assert parts[-1].startswith("bpf_prog_") and parts[-1].endswith("_[k]")  # kernel leaf last
    assert not any(p.endswith("_[k]") for p in parts[:parts.index("syscall+25") + 1])


def test_live_bpftrace_run_reports(needs_bpf: None, tmp_path: Path) -> None:
    from harness.host.parsed import run_bpftrace

    marker = "REPORT_TEST_READY"
    n = 40

    def program(pid: int | None) -> str:
        return (
            f'BEGIN {{ printf("{marker}\\n"); }}\n'
            f"tracepoint:net:net_dev_queue /pid == {pid}/ {{\n"
            "  @stacks[kstack] = count(); @len = hist(args->len);\n}\n"
        )

    result = run_bpftrace(
        program,
        marker,
        workload=[
            sys.executable,
            str(REPO / "harness" / "workloads" / "udp_send.py"),
            "--no-wait",
            "--count",
            str(n),
            "--sizes",
            "10,600",
        ],
        timeout=120,
    )
    assert result.error is None and result.output is not None
    run_dir = write_run_dir(
        tmp_path / "live", to_frames(result.output), {"program": result.program}
    )
    write_report(run_dir)
    folded = (run_dir / "stacks.folded").read_text().splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in folded) == n
    assert all(line.startswith("entry_SYSCALL_64") for line in folded)
    assert any("udp_send_skb" in line for line in folded)
    assert "udp_send_skb" in (run_dir / "stacks.flame.html").read_text()
    assert (run_dir / "len.hist.png").stat().st_size > 5000


def test_crosscheck_layout_reports_each_side_and_links_them(tmp_path: Path) -> None:
    top = tmp_path / "crosscheck"
    frames = to_frames(parse_text(CAPTURE))
    for side in ("bpftrace", "libbpf"):
        write_run_dir(top / side, frames, {"attach": "tracepoint", "side": side})
    (top / "verdict.json").write_text('{"passed": true}\n')
    written = write_report(top)
    for side in ("bpftrace", "libbpf"):
        assert top / side / "stacks.folded" in written
        assert (top / side / "stacks.folded").read_text() == f"{ROOT_FIRST} 50\n"
    summary = (top / "summary.md").read_text()
    assert (
        "[bpftrace/](bpftrace/summary.md)" in summary and "[verdict.json](verdict.json)" in summary
    )
    assert "## Maps and files" not in summary  # no CSVs at the top level

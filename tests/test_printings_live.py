"""Printings and totals on real runs (issue 18): a profile's stack map against a count taken
in the same program (`@n`), user stacks of two copies of one binary, and a pidpersec.bt-style
program (`time(); print(@)`) against the workload's own count; on bpftrace 0.17 and 0.27.
Each run also checks that run.json's `printed` agrees with every file (`printed_differences`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import harness
from harness.output.parse import parse_json
from harness.output.printed import printed
from harness.report.flamegraph import parse_folded

RELEASES = ["0.17", "0.27"]
# dd copies zeros in-kernel: almost every sample is in the kernel, with a full stack
BUSY = "dd if=/dev/zero of=/dev/null bs=4k count=400000"


def _run(program: str, workload: str, out: Path, release: str) -> dict:
    t = harness.trace(program, workload=["sh", "-c", workload], out=out, bpftrace=release,
                      timeout=120)
    assert t.path is not None
    meta = json.loads((t.path / "run.json").read_text())
    assert meta["printed_differences"] == [], meta["printed_differences"]
    return meta


def _totals(meta: dict, name: str) -> list[int]:
    return [p["total"] for p in meta["printed"][name]]


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("release", RELEASES)
def test_kstack_profile_total_equals_a_count_in_the_same_run(tmp_path: Path, release: str
                                                             ) -> None:
    meta = _run("profile:hz:499 { @[kstack] = count(); @n = count(); }", BUSY, tmp_path, release)
    (stacks,), (n,) = _totals(meta, "@"), _totals(meta, "@n")
    assert n > 50 and stacks == n  # every sample: empty and failed stacks included
    folded = tmp_path / "at.folded"
    assert sum(parse_folded(folded.read_text().splitlines()).values()) == n
    assert f'"printed":{n}' in (tmp_path / "at.flame.html").read_text()


@pytest.mark.usefixtures("needs_bpf")
def test_kstack_profile_json_keeps_repeated_keys() -> None:
    """-f json of the same program: the stack map's pairs add up to @n (json.loads alone
    drops all but one of the `@[]`-like repeated keys)."""
    bpftrace = shutil.which("bpftrace")
    assert bpftrace, "bpftrace is not installed"
    proc = subprocess.run(
        [bpftrace, "-f", "json", "-e", "profile:hz:499 { @[kstack] = count(); @n = count(); }",
         "-c", f"/bin/sh -c '{BUSY}'"], capture_output=True, text=True, timeout=120)
    out = parse_json(proc.stdout)
    counts = printed(out)
    (n,) = [p["total"] for p in counts["@n"]]
    assert n > 10 and [p["total"] for p in counts["@"]] == [n]


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("release", RELEASES)
def test_ustack_of_two_copies_of_one_binary(tmp_path: Path, release: str) -> None:
    """Two processes of one binary print equal symbolized stacks as separate keys: each stays
    a row, and the map's total is every sample."""
    spin = tmp_path / "ktspin"
    shutil.copy("/bin/dd", spin)
    work = (f"{spin} if=/dev/zero of=/dev/null bs=1 count=3000000 & "
            f"{spin} if=/dev/zero of=/dev/null bs=1 count=3000000 & wait")
    meta = _run('profile:hz:499 /comm == "ktspin"/ { @[ustack] = count(); @n = count(); }',
                work, tmp_path / "run", release)
    (stacks,), (n,) = _totals(meta, "@"), _totals(meta, "@n")
    assert n > 50 and stacks == n
    (entries,) = [p["entries"] for p in meta["printed"]["@"]]
    csv = (tmp_path / "run" / "at.csv").read_text().splitlines()
    assert len(csv) - 1 == entries  # one row per printed entry, equal keys included


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("release", RELEASES)
def test_pidpersec_printings_are_maps(tmp_path: Path, release: str) -> None:
    """`time("%H:%M:%S "); print(@);` prints the map mid-line: those printings are map
    printings (CSV rows), not text. The workload forks exactly 305 times (300 /bin/true, 5
    sleeps; the rest are dash builtins), from a shell copy whose name the probe filters on."""
    forker = tmp_path / "ktforker"
    shutil.copy("/bin/dash", forker)
    program = ('tracepoint:sched:sched_process_fork /comm == "ktforker"/ '
               '{ @ = count(); } interval:ms:200 { time("%H:%M:%S "); print(@); }')
    work = (f"{forker} -c 'i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); "
            "[ $((i % 60)) -eq 0 ] && sleep 0.3; done'")
    meta = _run(program, work, tmp_path / "run", release)
    totals = _totals(meta, "@")
    assert len(totals) >= 3 and totals[-1] == 305  # interval printings, then the exit dump
    assert totals == sorted(totals)  # a running count: never less than the printing before
    rows = (tmp_path / "run" / "at.csv").read_text().splitlines()
    assert rows[0].startswith("printing,t_s,") and len(rows) - 1 == len(totals)
    assert not any("@: " in line for line in meta["printed_lines"])


BACK_TO_BACK = """BEGIN { @i = 0; unroll(20) { @c[@i] = @i * 7; @i = @i + 1; } }
interval:ms:20 { @x = @x + 1; print(@c); print(@x); print(@c); if (@x == 15) { exit(); } }
"""


@pytest.mark.usefixtures("needs_bpf")
@pytest.mark.parametrize("release", RELEASES)
def test_back_to_back_prints_of_int_keys_are_printings_without_line_times(release: str) -> None:
    """`print(@c); print(@x); print(@c)`: bpftrace writes nothing between the printings, and a
    file read without arrival times had them as one printing. An int key (and a scalar map's
    line) cannot repeat within a printing, so the text alone gives what -f json of the same
    program gives: per interval two printings of @c and one of @x, then the exit dump, every
    printing's rows and total. The interval may fire again before exit() takes hold (a loaded
    machine), so each output's own count of @x printings says how many intervals printed."""
    from harness.host.bpftrace_versions import resolve
    from harness.output.parse import parse_text

    command = resolve(None if release == "0.17" else release).command
    outs = {}
    for fmt in ("text", "json"):
        proc = subprocess.run([*command.split(), "-f", fmt, "-e", BACK_TO_BACK],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-500:]
        outs[fmt] = proc.stdout
    text, js = printed(parse_text(outs["text"])), printed(parse_json(outs["json"]))
    for got in (text, js):  # text and json are two runs: each is checked against itself
        totals = [p["total"] for p in got["@x"]]
        intervals = len(got["@x"]) - 1  # the exit dump prints @x once more
        assert intervals >= 15 and totals[-1] >= 15 and len(got["@c"]) == 2 * intervals + 1
        # print() reads the map when bpftrace's user space gets to it: @x may be a step ahead
        assert [p["entries"] for p in got["@x"]] == [1] * (intervals + 1)
        assert totals == sorted(totals) and totals[-2] >= 15, totals
        assert {p["total"] for p in got["@c"]} == {7 * sum(range(20))}
        assert {p["entries"] for p in got["@c"]} == {20}

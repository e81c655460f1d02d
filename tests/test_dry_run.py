"""--dry-run and -v on run and crosscheck: the program a dry run prints is the program a run of
the same command records (run.json, program.bt, twin.bpf.c), and a dry run starts nothing and
writes no results directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.paths import workload

pytestmark = pytest.mark.kernel

MARKER = re.compile(r"KTRACE_(READY|XCHECK)_\d+")
LOOP = f"{sys.executable} {workload('syscall_loop.py')} --count 40"
CASES = {
    "catalog": ["ktrace", "--count", "5"],
    "probe-line": ["tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm", "-d", "300ms"],
    "literal": ["tracepoint:syscalls:sys_enter_getppid { @c[comm] = count(); }", "-d", "300ms"],
}


def section(out: str, title: str) -> str:
    """The text printed between `--- TITLE ---` and the next `---` line."""
    m = re.search(rf"^--- {re.escape(title)} ---\n(.*?)^---", out, re.M | re.S)
    assert m, f"no {title!r} section in:\n{out}"
    return m.group(1)


def as_recorded(shown: str, recorded: str) -> str:
    """The dry run's text with the run's marker and, where it stood, the workload's pid."""
    pid = re.search(r"pid == (\d+)", recorded)
    marker = MARKER.search(recorded)
    assert marker
    text = MARKER.sub(marker.group(), shown)
    return text.replace("pid == WORKLOAD_PID", f"pid == {pid.group(1)}") if pid else text


def dry_run(argv: list[str], results: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*argv, "--dry-run"]) == 0
    assert not results.exists() or not any(results.iterdir())  # nothing ran, nothing written
    return capsys.readouterr().out


@pytest.mark.parametrize("case", CASES)
def test_run_dry_run_and_v_print_the_program_that_runs(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = tmp_path / "results"
    monkeypatch.setenv("KTRACE_RESULTS", str(results))
    argv = ["run", *CASES[case]]
    planned = dry_run(argv, results, capsys)
    assert main([*argv, "-v", "-q", "--out", str(tmp_path / "run")]) == 0
    ran = capsys.readouterr().out
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    recorded = meta["program"]
    assert as_recorded(section(planned, "bpftrace program"), recorded) == recorded
    shown = section(ran, "bpftrace program")  # -v: the very plan that ran, marker and all
    assert shown.replace("pid == WORKLOAD_PID", "") == re.sub(r"pid == \d+", "", recorded)
    assert f"attach: {meta['attach']} ({meta['attach_reason']})" in planned
    if case == "literal":
        assert "--- no libbpf twin: a whole bpftrace program has no twin" in planned
    else:
        assert "SEC(" in section(planned, "libbpf CO-RE twin (C)")


def test_crosscheck_dry_run_prints_both_programs_that_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    monkeypatch.setenv("KTRACE_RESULTS", str(results))
    argv = ["crosscheck", "tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm",
            "-c", LOOP]
    planned = dry_run(argv, results, capsys)
    assert "note: WORKLOAD_PID stands for the workload's pid" in planned
    assert main([*argv, "-q", "--out", str(tmp_path / "x")]) == 0
    program = (tmp_path / "x" / "program.bt").read_text()
    assert as_recorded(section(planned, "bpftrace program"), program) == program
    twin = (tmp_path / "x" / "twin.bpf.c").read_text()
    assert section(planned, "libbpf CO-RE twin (C)") == twin
    # The run directory's twin builds on its own: the fixed C it #includes is kept beside it.
    from harness.twin.build import target_arch, vmlinux_header

    (tmp_path / "btf").mkdir()
    (tmp_path / "btf" / "vmlinux.h").symlink_to(vmlinux_header())
    done = subprocess.run(
        ["clang", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{target_arch()}",
         f"-I{tmp_path / 'btf'}", "-c", "twin.bpf.c", "-o", str(tmp_path / "again.o")],
        cwd=tmp_path / "x", capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]

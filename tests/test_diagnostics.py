"""bpftrace's own error wins over its noise, and line numbers are the user's (real bpftrace)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.spec.literal import calls_exit, with_ready_marker

pytestmark = pytest.mark.kernel


def test_unknown_tracepoint_names_the_tracepoint_not_rlimit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["run", "tracepoint:net:nope", "--count-by", "comm", "--duration", "1",
               "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "net:nope" in err and "RLIMIT" not in err


def test_syntax_error_line_is_the_users_line(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    program = "tracepoint:syscalls:sys_enter_getppid\n{ @x = 1 +; }"
    rc = main(["run", program, "--duration", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "line 2, column" in err and "@x = 1 +;" in err


def test_program_with_its_own_begin_and_exit_runs_unbounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = 'BEGIN { printf("hello\\n"); @a[1] = 7; exit(); }'
    assert main(["run", program, "--out", str(tmp_path / "r")]) == 0
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert "hello" in meta["printed_lines"]
    assert "RLIMIT" not in (meta.get("diagnostics") or "")


def test_ready_marker_keeps_user_lines_and_their_begin() -> None:
    two_lines = "tracepoint:a:b { @ = count(); }\n// BEGIN { in a comment\n"
    marked = with_ready_marker(two_lines, "M1")
    assert marked.splitlines()[:2] == two_lines.splitlines()
    assert marked.splitlines()[2] == 'BEGIN { printf("M1\\n"); }'
    own = 'tracepoint:a:b { printf("BEGIN {"); }\nBEGIN { @s = 1; }'
    assert with_ready_marker(own, "M2").splitlines()[1] == 'BEGIN { printf("M2\\n");  @s = 1; }'
    assert calls_exit("interval:s:1 { exit(); }")
    assert not calls_exit('BEGIN { printf("exit()"); } // exit()')

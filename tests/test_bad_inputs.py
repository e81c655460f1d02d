"""The bad inputs of issue 19, each as the user typed it: one error line naming the cause and
the fix, a non-zero exit, no traceback, and nothing run or written where it should not be.

tests/test_input_sweep.py goes on from these to every option and keyword."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_errors import Said, words

import harness
from harness.api.inputs import spec_options

PROBE = "tracepoint:syscalls:sys_enter_getppid"
UNWRITABLE = "/proc/ktrace-results"  # nothing can be created under /proc, even by root


def recorded_run(where: Path, **changes: Any) -> Path:
    """A run directory whose run.json is what `harness run PROBE -d 300ms` records, changed."""
    meta: dict[str, Any] = {
        "schema": 2, "target": PROBE, "spec": spec_options(PROBE, {}).to_dict(),
        "workload": None, "duration_s": 0.3, "timeout_s": 60.0, "attach_reason": "recorded",
        "lane": {"name": "host"}, "bpftrace": {"name": "system"},
    }
    meta.update(changes)
    where.mkdir(parents=True, exist_ok=True)
    (where / "run.json").write_text(json.dumps(meta))
    return where


# (argv with {tmp} for a fresh directory, words the error line must hold)
NAMED: list[tuple[list[str], list[str]]] = [
    # 30 tracebacks
    (["run", PROBE, "-d", "200ms", "--filter", "!" * 900 + "1"], ["--filter", "nested", "keep"]),
    (["run", PROBE, "-d", "200ms", "--out", "{tmp}/" + "x" * 300], ["File name too long",
                                                                    "255 bytes"]),
    (["report", "{run}", "--out", "{file}"], ["is a file", "--out"]),
    (["report", "{run}", "--out", UNWRITABLE], ["cannot write", "--out"]),
    (["diff", "{folded}", "{folded}", "--out", "{file}"], ["is a file", "--out"]),
    (["diff", "{folded}", "{folded}", "--out", UNWRITABLE], ["cannot write", "--out"]),
    (["bench", "syscalls", "--out", "{file}"], ["is a file", "--out"]),
    (["bench", "syscalls", "--out", UNWRITABLE], ["cannot write", "--out"]),
    (["run", "--again", "{again:duration_s=abc}"], ["duration_s='abc'", "repair"]),
    (["run", "--again", "{again:lane=host}"], ["lane='host' is not an object", "repair"]),
    # silent wrong
    (["run", PROBE, "-d", "200ms", "--comm", ""], ["--comm is empty", "drop --comm"]),
    (["run", PROBE, "-d", "200ms", "--cgroup", ""], ["--cgroup is empty", "drop --cgroup"]),
    (["run", PROBE, "-d", "200ms", "--comm", "a-command-name-of-20"],
     ["20 bytes", "first 15", "'a-command-name-'"]),
    (["run", PROBE, "-d", "200ms", "--top", "-1"], ["--top", "below 0"]),
    (["parse", "{file}", "--rows", "-1"], ["--rows", "below 0"]),
    (["diff", "{folded}", "{folded}", "--top", "-1"], ["--top", "below 0"]),
    (["run", "--again", "{again:duration_s=-5}"], ["duration_s=-5", "positive"]),
    (["run", "--again", "{again:duration_s=None}"], ["nothing bounds", "--duration"]),
    (["bench", "syscalls", "--label", "q/../../../x"], ["--label", "letters, digits"]),
    (["bench", "syscalls", "--rounds", "0"], ["--rounds", "below 1"]),
    (["matrix", "ktrace", "--timeout", "abc"], ["--timeout", "not a duration"]),
    # options that were taken and then ignored
    (["bench", "syscalls", "--count-by", "comm", "--out", "{tmp}/b"],
     ["count_by", "do not apply to catalog entry"]),
    (["bench", "syscalls", "--modes", ",", "--out", "{tmp}/b"], ["--modes names no tracer"]),
    (["bench", "syscalls", "--prebuilt", "{file}", "--out", "{tmp}/b"],
     ["--prebuilt", "not a directory"]),
    (["crosscheck", "ktrace", "-c", "true", "--out", "{tmp}/x"], ["brings its own workload"]),
    (["crosscheck", "ktrace", "--prebuilt", "{tmp}/nothing", "--out", "{tmp}/x"],
     ["prebuilt", "not a directory"]),
    (["run", PROBE, "-d", "200ms", "--bpftrace", ""], ["bpftrace", "empty"]),
    (["matrix", "nosuch", "--kernels", "host"], ["no catalog entry named 'nosuch'"]),
    (["diff", "{folded}", "{folded}", "--map", "@stacks"], ["--map @stacks", "both inputs are"]),
]


def _filled(argv: list[str], tmp: Path) -> list[str]:
    """The placeholders made real: {tmp}, a {file}, a {run} dir, a .{folded} file and
    {again:FIELD=VALUE} run dirs (VALUE read as json, else as a string)."""
    file = tmp / "a-file"
    file.write_text("@x: 1\n")
    folded = tmp / "s.folded"
    folded.write_text("main;f 3\n")
    run = recorded_run(tmp / "run")
    (run / "x.csv").write_text("value\n1\n")
    out = []
    for word in argv:
        if word.startswith("{again:"):
            field, _, raw = word[len("{again:"):-1].partition("=")
            try:
                value = json.loads(raw) if raw != "None" else None
            except ValueError:
                value = raw
            word = str(recorded_run(tmp / f"again-{len(out)}", **{field: value}))
        out.append(word.format(tmp=tmp, file=file, run=run, folded=folded))
    return out


@pytest.mark.parametrize(("argv", "said"), NAMED, ids=[words(a) for a, _ in NAMED])
def test_named_bad_input(run_cli: Any, tmp_path: Path, argv: list[str], said: list[str]
                         ) -> None:
    filled = _filled(argv, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    done: Said = run_cli(*filled)
    line = done.error_line(argv[0])
    for word in said:
        assert word in line, line
    assert sorted(tmp_path.rglob("*")) == before  # refused before anything was written


def test_a_diff_that_fails_makes_no_results_dir(run_cli: Any, results_in_tmp: Path,
                                                tmp_path: Path) -> None:
    folded = tmp_path / "s.folded"
    folded.write_text("main;f 3\n")
    run_cli("diff", str(tmp_path / "missing"), str(folded)).error_line("diff")
    assert not list(results_in_tmp.iterdir())


def test_a_bench_label_cannot_leave_out(run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "bench"
    run_cli("bench", "syscalls", "--out", str(out), "--label", "q/../../../x").error_line("bench")
    assert not list(tmp_path.rglob("x*"))


def test_a_program_ending_in_a_probe_without_block_is_not_given_the_marker() -> None:
    """A BEGIN appended after `probe` (no block) became that probe's block: bpftrace then
    named a wrong attach point, or sat waiting; as written it says what is wrong."""
    from harness.spec.literal import with_ready_marker

    program = f"{PROBE} {{ @ = count(); }} tracepoint:syscalls:sys_enter_getpid"
    assert with_ready_marker(program, "M") == program
    commented = f"{PROBE} {{ @ = count(); }} // the end\n"
    assert with_ready_marker(commented, "M").endswith('BEGIN { printf("M\\n"); }\n')


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_a_program_ending_in_a_probe_without_block_gets_bpftraces_error(
        run_cli: Any, tmp_path: Path) -> None:
    program = f"{PROBE} {{ @ = count(); }} tracepoint:syscalls:sys_enter_getpid"
    done = run_cli("run", program, "-d", "1s", "--timeout", "20s", "--out", str(tmp_path / "r"))
    line = done.error_line("run")
    assert "expected {" in line and "BEGIN" not in line


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_a_uprobe_runs_and_a_missing_one_says_so(run_cli: Any, tmp_path: Path) -> None:
    """A probe line of a kind the capability probe does not choose between (uprobe) runs as
    written; one on a function the binary lacks is an error, not an empty table (0.17 attaches
    BEGIN alone and says nothing)."""
    found = run_cli("run", "uprobe:/bin/bash:readline", "-d", "300ms", "-q",
                    "--out", str(tmp_path / "ok"))
    assert found.status == 0, found.err
    assert "attach: uprobe (uprobe works on this kernel)" in found.out
    missing = run_cli("run", "uprobe:/bin/bash:no_such_function_here", "-d", "300ms", "-q",
                      "--out", str(tmp_path / "missing"))
    line = missing.error_line("run")
    assert "matched nothing" in line and "bpftrace -l 'uprobe:/bin/bash:*'" in line
    assert (tmp_path / "missing" / "stdout.txt").exists()  # what bpftrace printed is kept


def test_kretprobe_without_kprobes_names_the_reason() -> None:
    from harness.host.capabilities import Capabilities, choose_attach

    caps = Capabilities(kernel="k", arch="x86_64", root=True, btf=True, tracefs="/t",
                        kprobes=False, kfunc=False, lockdown="none", bpftrace=None, clang=None,
                        bpftool=None, libbpf=None, qemu=None, kvm=False)
    with pytest.raises(harness.HarnessError, match="kprobes are not built into this kernel"):
        choose_attach({"kretprobe": None}, caps)
    assert choose_attach({"uretprobe": None}, caps)[0] == "uretprobe"


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_crosscheck_timeout_says_timeout(run_cli: Any, tmp_path: Path) -> None:
    """A loader still loading when --timeout ends is a timeout, not libbpf's last log line."""
    done = run_cli("crosscheck", "ktrace", "--timeout", "1us", "-q", "--out", str(tmp_path))
    line = done.error_line("crosscheck")
    # The loader is waited for first; on a loaded machine it may be ready before the first look
    # (it loads in milliseconds), and then bpftrace's wait is the one that times out.
    assert ("not attached after" in line or "did not attach within" in line), line
    assert "raise --timeout" in line and "successfully" not in line


def test_an_unexpected_exception_is_one_line(run_cli: Any, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here: a parser that raises what nothing expects) still ends in one line that
    says it is one, and KTRACE_TRACEBACK=1 gives the traceback back."""
    import harness.output.parse as parse

    def broken(text: str, **_: Any) -> Any:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(parse, "parse_text", broken)
    path = tmp_path / "out.txt"
    path.write_text("@x: 1\n")
    done = run_cli("parse", str(path))
    assert done.status == 1 and "Traceback" not in done.err
    assert done.err.strip().splitlines() == [
        "harness parse: internal error: ZeroDivisionError: boom; this is a harness bug: run "
        "again with KTRACE_TRACEBACK=1 and report the traceback"]
    monkeypatch.setenv("KTRACE_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        run_cli("parse", str(path))


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_an_unusable_cache_is_named_as_the_cache(tmp_path: Path) -> None:
    """A fresh process (the build cache is read once per process) with KTRACE_CACHE where
    nothing can be created: the line names the cache and KTRACE_CACHE, not a bare path."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "crosscheck", "ktrace", "--count", "5", "-q",
         "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "KTRACE_CACHE": UNWRITABLE, "KTRACE_RESULTS": str(tmp_path)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("harness crosscheck:")]
    assert f"the cache {UNWRITABLE} cannot be used" in line and "KTRACE_CACHE" in line

"""Failure paths of the real `harness` command: each ends in one line naming cause and fix,
never a traceback, and nothing already gathered is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.report.rundir import ResultsNotWritable, write_run_dir, written_or_kept

REPO = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness.cli"]
# Under /proc nothing can be created: an unwritable location even for root.
UNWRITABLE = "/proc/ktrace-results"


def harness(*args: str, env: dict[str, str] | None = None,
            prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, *HARNESS, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str], command: str) -> str:
    """The error line, after checking it is one line and no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith(f"harness {command}: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_duration_must_be_a_positive_finite_number(tmp_path: Path) -> None:
    for bad in ("nan", "inf", "-1", "0"):
        done = harness("run", "ktrace", "--duration", bad, "--out", str(tmp_path / bad))
        assert "duration" in one_line_error(done, "run")
        assert not (tmp_path / bad).exists()


def test_unbalanced_quote_in_the_workload() -> None:
    done = harness("run", "ktrace", "--workload", 'sh -c "exit 3')
    assert "balance its quotes" in one_line_error(done, "run")


def test_crosscheck_of_zero_datagrams() -> None:
    done = harness("crosscheck", "ktrace", "--count", "0")
    assert "nothing to compare" in one_line_error(done, "crosscheck")


def test_unwritable_results_location_is_refused_before_tracing() -> None:
    done = harness("run", "ktrace", env={"KTRACE_RESULTS": UNWRITABLE})
    line = one_line_error(done, "run")
    assert UNWRITABLE in line and "KTRACE_RESULTS" in line
    assert "attach:" not in done.stdout  # nothing ran


def test_out_naming_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    for command in ("run", "crosscheck"):
        done = harness(command, "ktrace", "--out", str(afile))
        assert "is a file" in one_line_error(done, command)
    assert afile.read_text() == "mine\n"


def test_parse_csv_into_an_unwritable_directory() -> None:
    corpus = REPO / "tests" / "data" / "corpus" / "udp_kstack" / "stdout.txt"
    done = harness("parse", str(corpus), "--csv", UNWRITABLE)
    assert UNWRITABLE in one_line_error(done, "parse")


def test_a_failed_write_keeps_the_run_in_a_named_temporary_directory() -> None:
    import pandas as pd

    frames = {"@c": pd.DataFrame({"key0": ["a"], "value": [3]})}
    kept, error = written_or_kept(
        lambda where: write_run_dir(
            where, frames, {"target": "t"}, stdout="@c[a]: 3\n", stderr=""
        ),
        Path(UNWRITABLE),
    )
    try:
        assert isinstance(error, ResultsNotWritable)
        assert str(kept) in str(error) and UNWRITABLE in str(error)
        assert (kept / "c.csv").read_text() == "key0,value\na,3\n"
        assert (kept / "stdout.txt").read_text() == "@c[a]: 3\n"
    finally:
        shutil.rmtree(kept)


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_out_reuse_only_for_a_run_of_the_same_target(tmp_path: Path) -> None:
    out = tmp_path / "run"
    probe = ("tracepoint:syscalls:sys_enter_getppid", "--count-by", "comm")
    first = harness("run", *probe, "--duration", "0.5", "--out", str(out))
    assert first.returncode == 0, first.stderr
    (out / "stale.csv").write_text("x\n1\n")
    again = harness("run", *probe, "--duration", "0.5", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert not (out / "stale.csv").exists()  # an earlier run's files never mix into this one
    other = harness("run", "ktrace", "--out", str(out))
    assert "pass --force" in one_line_error(other, "run")
    assert json.loads((out / "run.json").read_text())["target"] == probe[0]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    refused = harness("run", "ktrace", "--out", str(mine))
    assert "files of no harness run" in one_line_error(refused, "run")
    assert (mine / "notes.txt").read_text() == "keep\n"
    forced = harness("run", "ktrace", "--out", str(mine), "--force")
    assert forced.returncode == 0, forced.stderr
    assert not (mine / "notes.txt").exists()
    assert json.loads((mine / "run.json").read_text())["target"] == "ktrace"


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_a_run_ended_by_its_duration_is_a_normal_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = harness(
        "run", "tracepoint:syscalls:sys_enter_clock_nanosleep", "--count-by", "comm",
        "--workload", "sh -c 'while :; do sleep 0.1; done'", "--duration", "1", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["ended_by"] == "duration"
    assert meta["workload_status"] is None and meta["error"] is None
    # The raw streams are kept, and re-parsing stdout.txt gives the same map.
    assert (out / "stderr.txt").exists()
    reparsed = harness("parse", str(out / "stdout.txt"))
    assert reparsed.returncode == 0 and "@" in reparsed.stdout


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_not_root_is_one_line() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    home = Path(tempfile.mkdtemp(prefix="ktrace-nobody-"))  # pytest's tmp is root-only
    try:
        home.chmod(0o777)
        env = {"HOME": str(home), "KTRACE_RESULTS": str(home / "results"),
               "KTRACE_CACHE": str(home / "cache")}
        doctor = harness("doctor", env=env, prefix=nobody)
        assert doctor.returncode == 0 and "Traceback" not in doctor.stderr, doctor.stderr
        for command in ("run", "crosscheck"):
            done = harness(command, "ktrace", env=env, prefix=nobody)
            assert "not root" in one_line_error(done, command)
    finally:
        shutil.rmtree(home)


@pytest.mark.kernel
@pytest.mark.usefixtures("needs_bpf")
def test_root_without_capabilities_names_them(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    done = harness("run", "ktrace", "--out", str(tmp_path / "r"),
                   prefix=("setpriv", "--bounding-set=-all"))
    line = one_line_error(done, "run")
    assert "CAP_BPF" in line and "Unknown struct" not in done.stderr

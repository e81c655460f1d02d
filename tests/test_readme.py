"""The README's commands are executable documentation: each one runs, as a user would paste it.

Every command line of the README's indented blocks (`harness ...`, and the two set-up commands
minus their `bash scripts/setup.sh &&`, already done for this run) goes through bash from the
checkout. Placeholders are the only words replaced: `results/<run-id>` (and `<run-a>`,
`<run-b>`) by runs this test made. Lines that boot a guest (`--lane vm`, a matrix of Debian
kernels) carry the `vm` marker; the test command itself is not run again from inside pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SETUP = "bash scripts/setup.sh && "
TEST_COMMAND = ".venv/bin/python -m pytest"


def readme_commands() -> list[str]:
    """Command lines of the README's indented blocks, in order."""
    lines = (REPO / "README.md").read_text().splitlines()
    out = []
    for line in lines:
        m = re.match(r"^    ((?:harness|bash scripts/setup\.sh) .*)$", line)
        if m:
            out.append(m.group(1).strip())
    return out


def _needs_vm(command: str) -> bool:
    kernels = re.search(r"--kernels\s+(\S+)", command)
    return "--lane vm" in command or bool(kernels and kernels.group(1) != "host")


def _cases() -> list[object]:
    cases: list[object] = []
    for command in readme_commands():
        command = command.removeprefix(SETUP)
        if command.startswith(TEST_COMMAND):
            continue
        marks = [pytest.mark.vm] if _needs_vm(command) else [pytest.mark.kernel]
        cases.append(pytest.param(command, marks=marks, id=command[:60]))
    return cases


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme-results")


def _shell(command: str, results: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KTRACE_RESULTS": str(results),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _runs(results: Path, n: int) -> list[Path]:
    """`n` ktrace run directories (with @stacks) to stand for the README's placeholders, made
    apart from the runs the README's own lines write."""
    own = results / "placeholders"
    runs = sorted(p for p in own.glob("run-*") if (p / "run.json").exists())
    while len(runs) < n:
        done = _shell("harness run ktrace --count 20 -q", own)
        assert done.returncode == 0, done.stderr
        runs = sorted(p for p in own.glob("run-*") if (p / "run.json").exists())
    return runs


def test_the_readme_has_commands_to_test() -> None:
    commands = readme_commands()
    assert any(c.startswith("harness run") for c in commands)
    assert any(c.startswith(SETUP) for c in commands)


@pytest.mark.parametrize("command", _cases())
def test_readme_command_runs(command: str, results: Path) -> None:
    if "<run-" in command:
        runs = _runs(results, 2)
        command = (command.replace("results/<run-id>", str(runs[-1]))
                   .replace("results/<run-a>", str(runs[-2]))
                   .replace("results/<run-b>", str(runs[-1])))
    done = _shell(command, results)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"

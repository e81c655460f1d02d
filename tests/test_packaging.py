"""A plain (non-editable) `pip install .` works on its own: from a directory outside the checkout,
`harness run ktrace` and `import harness; harness.trace("ktrace")` find their workload, grammar
and twin sources inside the installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("needs_bpf")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `pip install .` of this checkout (wheels from pip's cache)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"pip install . failed: {done.stderr.strip().splitlines()[-1:]}")
    return venv


def _clean_env(results: Path) -> dict[str, str]:
    """No PYTHONPATH or checkout on the path: only the installed package can be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["KTRACE_RESULTS"] = str(results)
    return env


def test_the_install_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "bin/python"), "-c", "import harness; print(harness.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=_clean_env(tmp_path),
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(installed)) and not where.startswith(str(REPO))


def test_harness_run_ktrace_from_another_directory(installed: Path, tmp_path: Path) -> None:
    n = 20
    done = subprocess.run(
        [str(installed / "bin/harness"), "run", "ktrace", "--count", str(n), "--sizes", "100"],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=_clean_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["workload_status"] == 0
    assert str(installed) in " ".join(meta["workload"])  # the packaged udp_send.py
    stacks = (run_dir / "stacks.csv").read_text().splitlines()
    assert sum(int(line.rsplit(",", 1)[1]) for line in stacks[1:]) == n


def test_import_harness_trace_prints_the_stacks_frame(installed: Path, tmp_path: Path) -> None:
    code = (
        "import harness; t = harness.trace('ktrace', count=12, sizes='100'); "
        "print(t.frames['@stacks']); print('TOTAL', int(t.frames['@stacks']['value'].sum()))"
    )
    done = subprocess.run(
        [str(installed / "bin/python"), "-c", code],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=_clean_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "kstack" in done.stdout and "TOTAL 12" in done.stdout

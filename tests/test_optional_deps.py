"""An optional library that is missing is one typed line naming the extra that brings it
(issue 22): matplotlib (the `report` extra) draws the PNG plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_report import make_run_dir

from harness.errors import MissingDependency
from harness.report import plots

# A fresh interpreter where `import matplotlib` fails as it does when it is not installed.
WITHOUT_MATPLOTLIB = """
import sys
sys.modules["matplotlib"] = None
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_report_without_matplotlib_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run")  # holds a histogram, so the report plots it
    done = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, "report", str(run_dir)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == MissingDependency.exit_code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "matplotlib is not installed" in lines[0]
    assert "pip install 'ktrace-harness[report]'" in lines[0]


def test_the_plots_raise_the_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "matplotlib.figure", raising=False)
    monkeypatch.delitem(sys.modules, "matplotlib.backends.backend_agg", raising=False)
    monkeypatch.delitem(sys.modules, "matplotlib.backends", raising=False)
    with pytest.raises(MissingDependency, match=r"ktrace-harness\[report\]"):
        plots._new_figure(4, 3)

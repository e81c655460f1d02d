"""Running the `harness` command in-process and reading its one error line (shared by the
bad-input tests): `main(argv)` is the console script without a new interpreter, so hundreds of
bad inputs take seconds, not minutes. conftest.py makes its fixtures every test's."""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import INTERNAL, main


@dataclass
class Said:
    """What one command did: its exit status and its two streams."""

    status: int
    out: str
    err: str

    def error_line(self, command: str) -> str:
        """The error line, after checking it is the only one, with a non-zero exit and no
        traceback or internal error."""
        assert self.status != 0, f"accepted (exit 0):\n{self.out[-800:]}\n{self.err[-800:]}"
        assert "Traceback" not in self.err, self.err
        assert INTERNAL not in self.err, self.err
        errors = [ln for ln in self.err.splitlines() if ln.startswith(f"harness {command}: error:")]
        assert len(errors) == 1, self.err
        return errors[0]


@pytest.fixture
def results_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary KTRACE_RESULTS: an input wrongly accepted writes nothing into the
    checkout's results/."""
    where = tmp_path_factory.mktemp("results")
    monkeypatch.setenv("KTRACE_RESULTS", str(where))
    return where


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], results_in_tmp: Path) -> Iterator[object]:
    """`run_cli(*argv) -> Said`; the stop-signal handlers main() installs are put back, and
    results go to a temporary KTRACE_RESULTS."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def call(*argv: str) -> Said:
        capsys.readouterr()
        try:
            status = main(list(argv))
        except SystemExit as done:  # argparse's usage errors and --help
            status = done.code if isinstance(done.code, int) else 1
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        said = capsys.readouterr()
        return Said(status, said.out, said.err)

    yield call


def words(argv: Sequence[str]) -> str:
    """A readable test id for an argv."""
    text = " ".join(a if len(a) <= 30 else a[:27] + "..." for a in argv)
    return text.replace("\0", "\\0")

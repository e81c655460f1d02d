"""Typed errors: every failure the harness knows has a one-line message naming cause and fix."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of all expected failures. The CLI prints `str(err)` as one line and exits non-zero."""

    exit_code = 2

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        # One line, whatever it quotes: a path or a value holding a line break shows it escaped.
        text = f"{cause}; {fix}" if fix else cause
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))


class UsageError(HarnessError):
    """Bad command-line input (unknown catalog name, malformed spec line, missing file)."""


class MissingDependency(HarnessError):
    """An optional library a command needs is not installed (an extra of the package)."""


class CrosscheckError(HarnessError):
    """The crosscheck could not run (as opposed to running and finding a mismatch)."""

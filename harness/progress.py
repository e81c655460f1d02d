"""How long steps say how far they are: the library reports, the CLI shows.

Kernel fetches, VM boots, bench rounds and runs take seconds to minutes. The code doing them
takes a `Progress` callback and calls it with a phase name and, when it knows them, how much is
done out of how much (bytes, rounds, seconds). It never prints: the CLI decides whether and how
to show it (a live bar on a terminal, nothing in a pipe or with -q).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """`progress("downloading linux-image-6.1", done=3e6, total=7e7, unit="bytes")`."""

    def __call__(self, phase: str, done: float | None = None, total: float | None = None,
                 unit: str = "") -> None: ...


def silent(phase: str, done: float | None = None, total: float | None = None,
           unit: str = "") -> None:
    """The Progress that shows nothing (library use, pipes, -q)."""

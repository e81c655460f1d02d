"""The terminal side of harness.progress: a rich live bar on stderr, only on a TTY.

rich draws, refreshes and clears the line (and its ETA); a phase that knows its total gets a
bar, one that does not gets a spinner with the elapsed time. In a pipe, in CI or with -q it
draws nothing, so logs stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.progress import Progress, silent


def amount(done: float | None, total: float | None, unit: str) -> str:
    """`3.1/70.0 MB`, `4/10 rounds`, `12 s`: what the bar's text column shows."""
    if done is None:
        return ""
    if unit == "bytes":
        scale, suffix = 1e6, " MB"
        fmt = "{:.1f}"
    else:
        scale, suffix = 1.0, f" {unit}" if unit else ""
        fmt = "{:.0f}"
    shown = fmt.format(done / scale)
    if total:
        shown += "/" + fmt.format(total / scale)
    return shown + suffix


@contextmanager
def terminal_progress(quiet: bool = False) -> Iterator[Progress]:
    """Yield a Progress that draws on stderr while the block runs (or `silent`)."""
    if quiet or not sys.stderr.isatty():
        yield silent
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    tasks: dict[str, Any] = {}
    with Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
             TextColumn("{task.fields[amount]}"), TimeElapsedColumn(), TimeRemainingColumn(),
             console=Console(stderr=True), transient=True) as bar:

        def show(phase: str, done: float | None = None, total: float | None = None,
                 unit: str = "") -> None:
            for other, task in tasks.items():  # a new phase ends the one before
                if other != phase:
                    bar.update(task, visible=False)
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, amount="")
            bar.update(tasks[phase], completed=done or 0, total=total,
                       amount=amount(done, total, unit), visible=True)

        yield show

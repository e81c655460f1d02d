"""A run's raw capture parsed, once, on the harness's side: Capture -> RunResult.

The machine side of every lane (this machine's runner, a VM guest, a remote host's agent)
returns a harness.host.runner.Capture and imports no parser; the lanes hand it here. For a run
on this machine, `run_bpftrace` is both steps, and warms the parser while bpftrace starts.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError
from harness.host.runner import Capture, RunResult, capture_bpftrace, stdout_to_parse


def parse_capture(capture: Capture, marker: str) -> RunResult:
    """`capture` with its stdout parsed (the marker line blanked, so line numbers match
    stdout.txt); a parse error becomes the result's error unless it has one. The capture's
    warnings (lost events, a resent SIGINT, the workload's) join the parser's; the parse is
    timed here (`extra["parse_s"]`)."""
    # The parser loads lark and compiles the grammar (0.1-0.2 s): a run imports it only once
    # bpftrace is on its way (warm_parser), never before the spawn.
    from harness.output.parse import parse_text

    fields = {f.name: getattr(capture, f.name) for f in dataclasses.fields(Capture)}
    result = RunResult(**fields)
    began = time.monotonic()
    try:
        result.output = parse_text(stdout_to_parse(result.stdout, marker),
                                   line_times=result.line_times or None, program=result.program)
    except HarnessError as err:
        result.error = result.error or err
    result.extra["parse_s"] = time.monotonic() - began
    if result.output is not None:
        result.output.warnings.extend(result.warnings)
    return result


_WARMED: list[threading.Thread] = []


def warm_parser() -> None:
    """Import the output parser and compile its grammar in a thread while bpftrace compiles and
    attaches, so the parse finds it ready; once per process. Called after the spawn, not
    before, so that it does not hold the GIL on the way there."""
    if _WARMED:
        return

    def load() -> None:
        from harness.output.parse import parse_text

        parse_text("")

    _WARMED.append(threading.Thread(target=load, name="warm-parser", daemon=True))
    _WARMED[0].start()


def run_bpftrace(program: str | Callable[[int | None], str], marker: str,
                 **options: Any) -> RunResult:
    """harness.host.runner.capture_bpftrace on this machine (its keyword `options`), parsed,
    the parser warmed while bpftrace starts."""
    return parse_capture(capture_bpftrace(program, marker, on_spawn=warm_parser, **options),
                         marker)

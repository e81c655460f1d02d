"""Argument types shared by the subcommands: durations with units, as bpftrace and BCC users
write them (`500ms`, `5s`, `2m`; a bare number is seconds)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from harness.errors import UsageError
from harness.host.bpftrace_versions import resolve

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(us|ms|s|m|h)?\s*\Z")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """`500ms` -> 0.5. Positive and finite only: `nan`, `inf`, 0 and negatives are refused."""
    m = _DURATION.match(text)
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else math.nan
    if not m or not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{_shown(text)} is not a duration: write a positive number with an optional unit "
            "(us, ms, s, m, h), e.g. 500ms, 5s, 2m")
    return seconds


def add_lane_argument(parser: argparse.ArgumentParser) -> None:
    """`--lane` for run, crosscheck and bench: where the kernel under test is."""
    parser.add_argument(
        "--lane", default="host",
        help="host (default), vm[:VERSION] (a Debian guest) or ssh:[USER@]HOST[:PORT]",
    )


def _shown(text: str) -> str:
    """A value as an error line quotes it: cut short, so a pasted megabyte stays one line."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type for a whole number of at least `minimum` (`--top -1` is refused, not
    read as "all but the last")."""

    def whole(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{_shown(text)} is not a whole number: write e.g. {max(minimum, 10)}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{number} is below {minimum}: pass {minimum} or more")
        return number

    return whole


RELEASE_HELP = ("the bpftrace release to run: system (default), its version (0.17), 0.27 or "
                "latest (a Debian root built on first use; `harness doctor` lists them)")


def add_bpftrace_argument(parser: argparse.ArgumentParser, help: str = RELEASE_HELP,
                          metavar: str = "VERSION") -> None:
    """`--bpftrace VERSION` for run, crosscheck and bench; matrix's takes VERSIONS."""
    parser.add_argument("--bpftrace", metavar=metavar, help=help)


def prepare_bpftrace(args: argparse.Namespace) -> None:
    """Resolve --bpftrace before any lane runs: a root is built here, on the host, so a VM
    guest (which sees the host's files read-only) finds it; an unknown name fails early."""
    if getattr(args, "bpftrace", None) is not None and not args.bpftrace.strip():
        raise UsageError("--bpftrace is empty",
                         "name a release (system, 0.17, 0.27, latest), or drop --bpftrace")
    if getattr(args, "bpftrace", None):
        resolve(args.bpftrace)

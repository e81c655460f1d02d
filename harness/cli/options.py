"""Argument types shared by the subcommands: durations with units, as bpftrace and BCC users
write them (`500ms`, `5s`, `2m`; a bare number is seconds)."""

from __future__ import annotations

import argparse
import math
import re

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(us|ms|s|m|h)?\s*\Z")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """`500ms` -> 0.5. Positive and finite only: `nan`, `inf`, 0 and negatives are refused."""
    m = _DURATION.match(text)
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else math.nan
    if not m or not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write a positive number with an optional unit "
            "(us, ms, s, m, h), e.g. 500ms, 5s, 2m")
    return seconds

"""Checks of the public API's arguments: a wrong type or value is a UsageError that names the
parameter, what it got and what it takes, raised before anything runs, never a TypeError from
deep inside a run.

Written by hand: each check is a few lines in the harness's own wording (cause; fix), and a
validation library (pydantic, typeguard) would bring its own messages and its import time to
every `harness run`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UsageError


def _shown(value: Any) -> str:
    """The value as the message shows it: short, with its type when that is the point."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit conversion limit
        return f"<an integer of {value.bit_length()} bits>"
    return text if len(text) <= 60 else text[:57] + "..."


def _refuse(name: str, value: Any, takes: str, example: str) -> UsageError:
    return UsageError(f"{name}={_shown(value)} is not {takes}", f"pass e.g. {name}={example}")


def no_nul(name: str, text: str) -> str:
    """A NUL cannot cross into argv, a path or a C string: it would cut the text short there."""
    if "\0" in text:
        raise UsageError(
            f"{name} {_shown(text)} holds a NUL byte at offset {text.index(chr(0))}",
            "drop the NUL",
        )
    return text


def string(name: str, value: Any, example: str) -> str:
    """A str (what it may hold is checked where it is used)."""
    if not isinstance(value, str):
        raise _refuse(name, value, "a string", example)
    return value


def text(name: str, value: Any, example: str) -> str:
    """A non-empty string without NUL."""
    if not isinstance(value, str) or not value.strip():
        raise _refuse(name, value, "a non-empty string", example)
    return no_nul(name, value)


def seconds(name: str, value: Any, example: str = "5") -> float:
    """A positive, finite number of seconds. Units are the command line's (`5s`); the API
    takes numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = " (units such as '5s' are for the command line)" if isinstance(value, str) else ""
        raise UsageError(
            f"{name}={_shown(value)} is not a number of seconds{hint}",
            f"pass a positive number, e.g. {name}={example}",
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float: no finite number of seconds
        number = math.inf
    if not (math.isfinite(number) and number > 0):
        raise UsageError(
            f"{name}={_shown(value)} is not a positive, finite number of seconds",
            f"pass e.g. {name}={example}",
        )
    return number


def integer(name: str, value: Any, minimum: int, example: str) -> int:
    """An int (not a bool, not a float) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _refuse(name, value, "an integer", example)
    if value < minimum:
        raise UsageError(f"{name}={_shown(value)} is below {minimum}",
                         f"pass e.g. {name}={example}")
    return int(value)


def flag(name: str, value: Any) -> bool:
    """True or False, nothing that merely looks like one (`"no"` is truthy)."""
    if not isinstance(value, bool):
        raise _refuse(name, value, "True or False", "True")
    return value


def callback(name: str, value: Any) -> Callable[..., Any] | None:
    """None or something callable."""
    if value is not None and not callable(value):
        raise _refuse(name, value, "a function (or None)", "print")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str | None:
    """None or one of `choices`."""
    if value is not None and value not in choices:
        raise UsageError(
            f"{name}={_shown(value)} is not one of {', '.join(choices)}",
            f"pass e.g. {name}={choices[0]!r}, or None",
        )
    return value


def instance(name: str, value: Any, kind: type[Any], example: str) -> Any:
    """An object of `kind` (an options object)."""
    if not isinstance(value, kind):
        raise _refuse(name, value, f"a {kind.__name__}", example)
    return value


def path(name: str, value: Any, example: str) -> Path:
    """A str or os.PathLike naming a path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():  # '\r' would name a directory '\r'
        raise _refuse(name, value, "a path (str or pathlib.Path)", example)
    return Path(no_nul(name, value))


def directory(name: str, value: Any, example: str) -> Path:
    """An existing directory (something to read from, such as a build made elsewhere)."""
    found = path(name, value, example)
    if not found.is_dir():
        raise UsageError(f"{name}={_shown(value)} is not a directory",
                         f"pass an existing directory, e.g. {name}={example}")
    return found


def out(value: Any) -> Path | bool | None:
    """`out=`: a directory path, None (a new results/ directory) or False (write nothing)."""
    if value is None or value is False:
        return value
    if value is True:
        raise UsageError("out=True names no directory",
                         "pass a path, None for a new results/ directory, or False for none")
    return path("out", value, "'results/mine'")


def release(value: Any) -> str | None:
    """`bpftrace=`: a release name such as '0.27' (a number would lose its trailing zeros)."""
    if value is not None and not isinstance(value, str):
        raise UsageError(
            f"bpftrace={_shown(value)} is not a release name",
            "pass it as a string: bpftrace='0.27', 'system' or 'latest'",
        )
    if value is not None and not value.strip():
        raise UsageError("bpftrace='' names no release",
                         "pass None for the system's, or a name such as '0.27'")
    return None if value is None else no_nul("bpftrace", value)


def optional_seconds(name: str, value: Any, example: str = "5") -> float | None:
    """None, or `seconds`."""
    return None if value is None else seconds(name, value, example)


def names(name: str, value: Any, example: str, *, none_ok: bool = False) -> list[Any]:
    """A non-empty list or tuple of names (a bare string would be read one character at a
    time, and an empty list would run nothing, silently)."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise _refuse(name, value, "a non-empty list of names", example)
    for i, item in enumerate(value):
        if item is None and none_ok:
            continue
        text(f"{name}[{i}]", item, example)
    return list(value)

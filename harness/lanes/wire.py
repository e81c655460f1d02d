"""The lane protocol's one codec: dataclasses <-> JSON, imported by both ends.

The harness and its remote agent (harness.lanes.agent, on an SSH host or a VM guest) exchange
one JSON object per line. A record crosses as the plain JSON of its dataclass (`encode`) and is
rebuilt on the other side from the field types that dataclass declares (`decode`), so a record
has one definition for both ends and no hand-written field lists. Bytes cross as hex, paths as
strings, a HarnessError as its type, cause and fix (rebuilt as the same typed error where that
type is known). Standard library only: the agent imports it on machines without the harness's
dependencies.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import dataclasses
import functools
import importlib
import json
import sys
import traceback
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from harness.errors import HarnessError


def encode(value: Any) -> Any:
    """A value as JSON data: dataclasses as dicts of their fields, bytes as hex, errors as dicts."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseException):
        return error_dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode(v) for v in value]
    raise TypeError(f"wire.encode: no JSON form for {type(value).__name__}")


def record(value: Any) -> dict[str, Any]:
    """A dataclass as the JSON object of its fields: the body of a request or an answer."""
    data = encode(value)
    if not isinstance(data, dict):
        raise TypeError(f"wire.record: {type(value).__name__} is not a record")
    return data


def decode(tp: Any, data: Any, names: Mapping[str, Any] | None = None) -> Any:
    """JSON data back into `tp` (a dataclass, bytes, Path, list[X], dict[str, X], tuple[...],
    X | None, HarnessError or a subclass, a JSON type, or Any). `names` resolves the types a
    dataclass's module imports only for type checking (Gathered's RunResult and MapDump)."""
    names = names or {}
    if tp is Any or tp is object or data is None:
        return data
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return decode(options[0], data, names) if len(options) == 1 else data
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v, names) for v in data)
        return tuple(decode(a, v, names) for a, v in zip(args, data, strict=True))
    if origin in (list, set, frozenset) or (origin is not None and _is_sequence(origin)):
        item = args[0] if args else Any
        return [decode(item, v, names) for v in data]
    if origin is dict or (origin is not None and _is_mapping(origin)):
        value_type = args[1] if len(args) == 2 else Any
        return {k: decode(value_type, v, names) for k, v in data.items()}
    if tp is bytes:
        return bytes.fromhex(data)
    if tp is Path:
        return Path(data)
    if isinstance(tp, type) and issubclass(tp, BaseException):
        return typed_error(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = field_types(tp, tuple(sorted(names.items(), key=lambda kv: kv[0])))
        known = {f.name for f in dataclasses.fields(tp) if f.init}
        return tp(**{k: decode(hints.get(k, Any), v, names) for k, v in data.items()
                     if k in known})
    return data


def _is_sequence(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, abc.Sequence) and origin is not str


def _is_mapping(origin: Any) -> bool:
    return isinstance(origin, type) and issubclass(origin, abc.Mapping)


@functools.cache
def field_types(cls: type, names: tuple[tuple[str, Any], ...] = ()) -> dict[str, Any]:
    """A dataclass's field types, resolved from their annotations in its module (plus `names`).
    A name still unresolved (RunResult's `Output`, imported only for type checking) decodes as
    plain JSON: such fields carry None over the wire."""
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    namespace.setdefault("Any", Any)
    namespace.update(names)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        annotation = f.type
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except (NameError, AttributeError, TypeError):
                annotation = Any
        out[f.name] = annotation
    return out


def error_dict(err: BaseException) -> dict[str, Any]:
    """An error as data: its class (to rebuild it typed), cause and fix, and for an unexpected
    one the end of its traceback."""
    data: dict[str, Any] = {
        "module": type(err).__module__,
        "type": type(err).__name__,
        "cause": getattr(err, "cause", None) or str(err) or type(err).__name__,
        "fix": getattr(err, "fix", ""),
    }
    # What a typed error carries beside its message (a syntax error's line and column, an
    # interruption's signal number), where it is plain data.
    attrs = {k: v for k, v in vars(err).items() if k not in ("cause", "fix")
             and isinstance(v, bool | int | float | str | type(None))}
    if attrs:
        data["attrs"] = attrs
    if not isinstance(err, HarnessError):
        data["traceback"] = "".join(traceback.format_exception(err))[-2000:]
    return data


class RemoteFailure(HarnessError):
    """The remote side failed in a way the harness has no type for (a bug there): the message
    names the exception and where it happened."""


def typed_error(data: dict[str, Any]) -> HarnessError:
    """An error_dict back as the same typed HarnessError (RemoteFailure for other exceptions)."""
    cls: type[BaseException] | None = None
    with contextlib.suppress(ImportError, AttributeError, ValueError):
        found = getattr(importlib.import_module(data["module"]), data["type"])
        if isinstance(found, type) and issubclass(found, HarnessError):
            cls = found
    if cls is None:
        tb = (data.get("traceback") or "").strip().splitlines()
        where = f" ({tb[-3].strip()})" if len(tb) >= 3 else ""
        return RemoteFailure(
            f"the remote agent failed: {data['type']}: {data['cause']}{where}",
            "report it with the lane's log (run.json keeps the remote stderr)",
        )
    err: HarnessError = cls.__new__(cls)  # type: ignore[assignment]
    HarnessError.__init__(err, data["cause"], data.get("fix", ""))
    for name, value in (data.get("attrs") or {}).items():
        setattr(err, name, value)
    return err


def write_message(stream: IO[bytes], message: dict[str, Any]) -> None:
    """One message, one line; flushed, so the other side sees it at once."""
    stream.write(json.dumps(encode(message), separators=(",", ":")).encode() + b"\n")
    stream.flush()


def read_message(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream."""
    line = stream.readline()
    if not line:
        return None
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"lane message is not an object: {line[:80]!r}")
    return data

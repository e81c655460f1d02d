"""The Output model: what one bpftrace run printed, independent of text or json format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast


class Stack(tuple[str, ...]):
    """Frames of one kstack/ustack, leaf first. A tuple, so it compares equal to one."""

    __slots__ = ()


# A key part: an int, a string, or a stack of frames.
KeyPart = int | str | tuple[str, ...]
Key = tuple[KeyPart, ...]
# How a key is stored: its only part when it has one (saves a tuple per entry of a
# 100,000-key map), else the tuple itself (the scalar map's key is the empty tuple).
PackedKey = KeyPart | Key


def pack_key(key: Key) -> PackedKey:
    """(part,) -> part; other keys unchanged."""
    return key[0] if len(key) == 1 else key


def unpack_key(packed: PackedKey) -> Key:
    """The inverse of pack_key (a Stack is a part, never a packed tuple)."""
    if type(packed) is tuple:
        return cast(Key, packed)
    return (cast(KeyPart, packed),)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hist/lhist bucket: lo inclusive, hi exclusive; None is an open end."""

    lo: int | None
    hi: int | None
    count: int


@dataclass(frozen=True, slots=True)
class Stats:
    """The value of a `stats()` map entry."""

    count: int
    average: int
    total: int


@dataclass
class MapPrint:
    """One printing of one map. `values[i]` belongs to `keys[i]` (stored packed).

    Value types by kind: 'int' -> int, 'str' -> str, 'stats' -> Stats,
    'hist'/'lhist' -> list[Bucket], 'stack' -> Stack. `key_sep` is how the format joined
    tuple keys (", " in text, "," in json): strings holding it are re-joined in frames.
    `line` is the output line the printing started on; `t_s` the seconds since the probes
    attached when that line arrived (None when nothing timed it). A printing may be empty
    (a zeroed hist prints its header alone).
    """

    name: str
    printing: int
    kind: str
    packed_keys: list[PackedKey] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    key_sep: str = ", "
    t_s: float | None = None
    line: int = 0

    @property
    def keys(self) -> list[Key]:
        """Every key as a tuple of parts."""
        return [unpack_key(k) for k in self.packed_keys]

    def __len__(self) -> int:
        return len(self.packed_keys)


@dataclass
class Output:
    """A parsed run: attach count, non-map lines in order, warnings, map printings.

    Nothing is dropped silently: every line of the output is in a map printing, in `lines`
    (printf/print text), or named by a warning ("line N: ..."), which covers every repair
    of a known bpftrace defect too. `unparsed` holds the numbers of lines that could not be
    read at all (each also has a warning).
    """

    probes: int | None = None
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    maps: list[MapPrint] = field(default_factory=list)
    unparsed: list[int] = field(default_factory=list)

    def names(self) -> list[str]:
        """Map names in order of first printing."""
        return list(dict.fromkeys(m.name for m in self.maps))

    def counts(self) -> dict[str, int]:
        """What the run yielded, for summaries: an unparsed line > 0 means look at warnings."""
        return {
            "maps": len(self.names()),
            "printings": len(self.maps),
            "entries": sum(len(m) for m in self.maps),
            "lines": len(self.lines),
            "warnings": len(self.warnings),
            "unparsed": len(self.unparsed),
        }

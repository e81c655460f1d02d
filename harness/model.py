"""The Output model: what one bpftrace run printed, independent of text or json format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A key part: an int, a string, or a stack (tuple of frame strings, leaf first).
KeyPart = int | str | tuple[str, ...]
Key = tuple[KeyPart, ...]


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
    """One printing of one map. `values[i]` belongs to `keys[i]`.

    Value types by kind: 'int' -> int, 'str' -> str, 'stats' -> Stats,
    'hist'/'lhist' -> list[Bucket]. `key_sep` is how the format joined tuple keys
    (", " in text, "," in json): strings holding it are re-joined in frames.
    """

    name: str
    printing: int
    kind: str
    keys: list[Key] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    key_sep: str = ", "

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Output:
    """A parsed run: attach count, non-map lines in order, stderr warnings, map printings."""

    probes: int | None = None
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    maps: list[MapPrint] = field(default_factory=list)

    def names(self) -> list[str]:
        """Map names in order of first printing."""
        return list(dict.fromkeys(m.name for m in self.maps))

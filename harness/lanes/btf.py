"""Where a struct's field lies in one kernel, read from that kernel's BTF (the raw
/sys/kernel/btf/vmlinux): for programs compiled here for another kernel (harness.lanes.aot),
which must read the field at that kernel's offset, not this one's.

Only what that needs is read: the type records' layout (each kind's trailing data, so that
type ids can be indexed), struct and union members (anonymous ones searched through, as a C
compiler does for `skb->hash` inside an unnamed union), and the scalar a member ends in (its
size and signedness through typedefs and qualifiers). Standard library only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0xEB9F
# BTF kinds (linux/btf.h) and the bytes of data after each type record of that kind (vlen:
# the record's count of members, parameters, enumerators or variables).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT = 9, 10, 11, 12, 13, 14, 15, 16
DECL_TAG, TYPE_TAG, ENUM64 = 17, 18, 19
_FIXED = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
_PER_ITEM = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}
_ALIASES = {TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG}


class BtfError(ValueError):
    """The data is not BTF this reader understands."""


@dataclass(frozen=True)
class Field:
    """A member as a program reads it: byte offset from the struct's start, size in bytes,
    whether the value is signed, and its kind ('int', 'enum' or 'ptr')."""

    offset: int
    size: int
    signed: bool
    kind: str


class Btf:
    """One kernel's types, indexed by id (the data is kept; records are read on demand)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError("too short for a BTF header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x}; only little-endian BTF is read)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.data = data
        self.types = hdr_len + type_off
        self.strings = hdr_len + str_off
        self.strings_end = self.strings + str_len
        self.at: list[int] = [-1]  # type id -> offset of its record (id 0 is void)
        self.names: dict[str, list[int]] = {}
        pos, end = self.types, self.types + type_len
        while pos < end:
            name_off, info, _ = struct.unpack_from("<III", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind in (STRUCT, UNION) and name_off:
                self.names.setdefault(self.name(name_off), []).append(len(self.at))
            self.at.append(pos)
            pos += 12 + _FIXED.get(kind, 0) + _PER_ITEM.get(kind, 0) * vlen

    def name(self, offset: int) -> str:
        start = self.strings + offset
        stop = self.data.index(b"\0", start, self.strings_end)
        return self.data[start:stop].decode()

    def _record(self, type_id: int) -> tuple[int, int, int, int, int]:
        """(kind, vlen, kflag, name offset, size-or-type) of a type id."""
        pos = self.at[type_id]
        name_off, info, size_or_type = struct.unpack_from("<III", self.data, pos)
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, name_off, size_or_type

    def _members(self, type_id: int) -> list[tuple[str, int, int, int]]:
        """(name, type id, bit offset, bitfield size or 0) of a struct's or union's members."""
        _, vlen, kflag, _, _ = self._record(type_id)
        pos = self.at[type_id] + 12
        out = []
        for i in range(vlen):
            name_off, member_type, offset = struct.unpack_from("<III", self.data, pos + 12 * i)
            bits = offset >> 24 if kflag else 0
            out.append((self.name(name_off) if name_off else "", member_type,
                        offset & 0xFFFFFF if kflag else offset, bits))
        return out

    def _resolved(self, type_id: int) -> int:
        """The type behind typedefs and qualifiers."""
        for _ in range(64):
            kind, _, _, _, size_or_type = self._record(type_id)
            if kind not in _ALIASES:
                return type_id
            type_id = size_or_type
        raise BtfError(f"type {type_id}: a chain of typedefs that does not end")

    def _find(self, type_id: int, field: str, base: int) -> tuple[int, int, int] | None:
        """(bit offset, type id, bitfield size) of `field` in a struct or union, searching
        anonymous members too."""
        for name, member_type, bit_offset, bits in self._members(type_id):
            if name == field:
                return base + bit_offset, member_type, bits
            if not name:
                inner = self._resolved(member_type)
                if self._record(inner)[0] in (STRUCT, UNION):
                    found = self._find(inner, field, base + bit_offset)
                    if found is not None:
                        return found
        return None

    def field(self, struct_name: str, field: str) -> Field | None:
        """`struct struct_name`'s member `field` as a scalar read; None when the struct or the
        member is missing, or the member is no whole-byte integer, enum or pointer (a
        bitfield, an array, a struct)."""
        for type_id in self.names.get(struct_name, []):
            if self._record(type_id)[0] != STRUCT:
                continue
            found = self._find(type_id, field, 0)
            if found is None:
                continue
            bit_offset, member_type, bits = found
            kind, _, kflag, _, size = self._record(self._resolved(member_type))
            if bits or bit_offset % 8:
                return None
            if kind == INT:
                encoding = struct.unpack_from("<I", self.data, self.at[
                    self._resolved(member_type)] + 12)[0]
                if encoding & 0xFF != 8 * size or (encoding >> 16) & 0xFF:
                    return None  # an int narrower than its storage
                return Field(bit_offset // 8, size, bool((encoding >> 24) & 1), "int")
            if kind in (ENUM, ENUM64):
                return Field(bit_offset // 8, size, bool(kflag), "enum")
            if kind == PTR:
                return Field(bit_offset // 8, 8, False, "ptr")
            return None
        return None

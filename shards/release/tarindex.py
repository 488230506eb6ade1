"""Where each member of an uncompressed tar lies, from its headers alone (no data read).

Python's ``tarfile`` parses every header field in pure Python (~60 us a member); export-lmdb only
needs each member's name, data offset and size, so this reads them straight from the 512-byte
ustar headers (with pax ``path`` records and GNU long names for names over 100 characters) and
checks each header's checksum. Written for the shards this package writes; any tar a ``tarfile``
reader accepts in ustar, pax or GNU format works.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from common.tar_header import header_number, pax_path

BLOCK = 512


class Member(NamedTuple):
    name: str
    offset: int  # of the data
    size: int


def members(f: BinaryIO, where: str = "tar") -> Iterator[Member]:
    """Regular-file members in archive order; ``ValueError`` on a bad header or a cut archive."""
    offset, long_name = 0, None
    while True:
        f.seek(offset)
        header = f.read(BLOCK)
        if len(header) < BLOCK:
            raise ValueError(f"{where}: archive ends inside a header at byte {offset}")
        if header == bytes(BLOCK):
            return
        if header_number(header[148:156]) != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise ValueError(f"{where}: bad header checksum at byte {offset}")
        size, kind = header_number(header[124:136]), header[156:157]
        data = offset + BLOCK
        offset = data + -(-size // BLOCK) * BLOCK
        if kind in (b"x", b"L"):  # the next header's name, in a pax record or a GNU long name
            f.seek(data)
            payload = f.read(size)
            long_name = pax_path(payload) if kind == b"x" else payload.rstrip(b"\x00").decode("utf-8")
            continue
        if kind not in (b"0", b"\x00"):
            long_name = None
            continue
        name = header[:100].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
        if header[257:263] == b"ustar\x00" and header[345]:
            name = header[345:500].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape") + "/" + name
        yield Member(long_name or name, data, size)
        long_name = None


def read_members(path: str | Path) -> list[Member]:
    with open(path, "rb") as f:
        return list(members(f, str(path)))

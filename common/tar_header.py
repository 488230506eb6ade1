"""Fields of a ustar header that every tar reader of the project parses the same way: numbers
(octal text or GNU base-256) and the ``path`` record of a pax extended header."""

from __future__ import annotations


def header_number(field: bytes) -> int:
    """A numeric header field: octal text, or base-256 (GNU) for 8 GiB and more."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - (1 << (8 * len(field) - 8)) if field[:1] == b"\xff" else value
    text = field.replace(b"\x00", b" ").strip()
    return int(text, 8) if text else 0


def pax_path(data: bytes) -> str | None:
    """The ``path`` record of a pax extended header (records ``"<len> <key>=<value>\\n"``)."""
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
        pos += length
    return None

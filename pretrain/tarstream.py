"""WebDataset samples straight from the tar headers: what ``wds.tarfile_to_samples`` yields, ~9x leaner.

Python's ``tarfile`` parses every header field in pure Python (~25 us a member, two members a
sample: half the time of a crop's decode). Training needs each member's name and bytes only,
so this reads the 512-byte ustar headers itself (checksum checked; pax ``path`` records and GNU
long names for names over 100 characters) in one sequential buffered pass, and reads only the
members whose suffix is wanted (the ``.json`` beside each ``.jpg`` is skipped, not read,
unless ``--positives tracklet`` asks for it: ``tracklet_pairs.SUFFIXES``).

Samples are grouped as webdataset groups them: the key is the member name up to the first dot of
its basename, the suffix (lower-cased) the rest; consecutive members with one key make a sample
``{"__key__", "__url__", suffix: bytes, ...}``; ``__meta__`` names and names without a dot
are skipped. A sample none of whose members is wanted is still yielded (without data), so a
caller can count it. A read error (a cut or garbled archive, a missing file, a duplicate member)
goes to ``handler`` with the shard's url appended to its arguments, as webdataset does:
``handler`` returning True skips the rest of that shard, False ends the stream. A ``UsageError``
(``open_shard`` refusing a tar that changed since it was checked) is no read error: it ends the
stream whatever ``handler`` says.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, BinaryIO

from common.errors import UsageError
from common.tar_header import header_number, pax_path

BLOCK = 512
BUFFER = 1 << 20
EMPTY = bytes(BLOCK)
META = re.compile(r"__[^/]*__($|/)")  # webdataset's skip_meta


def _octal(field: bytes) -> int:
    """``header_number``, with the common case (octal digits, NUL or space ended) first."""
    try:
        return int(field.rstrip(b"\x00 "), 8)
    except ValueError:
        return header_number(field)


def _checksum_ok(header: bytes) -> bool:
    """The header's checksum: the sum of its bytes with the checksum field read as 8 spaces.

    The sum is taken in C: Adler-32's low half is 1 + the byte sum mod 65521 (a header's sum is
    at most 130,560), so the test is exact modulo 65521.
    """
    want = _octal(header[148:156]) - 256 + sum(header[148:156]) + 1
    return want % 65521 == zlib.adler32(header) & 0xFFFF


def _read(f: BinaryIO, size: int, offset: int) -> bytes:
    data = f.read(size)
    if len(data) < size:
        raise ValueError(f"archive ends inside a member at byte {offset}")
    return data


def tar_members(f: BinaryIO, suffixes: Collection[str]) -> Iterator[tuple[str, str, bytes | None]]:
    """(key, suffix, bytes) of every regular file with a key, in archive order; bytes only for ``suffixes``."""
    offset, long_name = 0, None
    while True:
        header = f.read(BLOCK)
        if not header or header == EMPTY:
            return
        if len(header) < BLOCK:
            raise ValueError(f"archive ends inside a header at byte {offset}")
        if not _checksum_ok(header):
            raise ValueError(f"bad tar header checksum at byte {offset}")
        size, kind = _octal(header[124:136]), header[156:157]
        padded = -(-size // BLOCK) * BLOCK
        offset += BLOCK + padded
        if kind in (b"x", b"L"):  # the next header's name, in a pax record or a GNU long name
            payload = _read(f, padded, offset)[:size]
            long_name = pax_path(payload) if kind == b"x" else payload.rstrip(b"\x00").decode("utf-8")
            continue
        if kind not in (b"0", b"\x00"):
            f.seek(padded, 1)
            long_name = None
            continue
        name = long_name or header[:100].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
        if not long_name and header[257:263] == b"ustar\x00" and header[345]:
            name = header[345:500].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape") + "/" + name
        long_name = None
        split = key_and_suffix(name)
        if split is not None and split[1] in suffixes:
            yield split[0], split[1], _read(f, padded, offset)[:size]
            continue
        f.seek(padded, 1)
        if split is not None:
            yield split[0], split[1], None


def key_and_suffix(name: str) -> tuple[str, str] | None:
    """webdataset's split: up to the first dot of the basename, and the rest (lower-cased)."""
    folder, slash, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    if not dot or not stem or (name[:2] == "__" and META.match(name)):
        return None
    return (folder + slash + stem if slash else stem), suffix.lower()


Opener = Callable[[str], BinaryIO]


def open_tar(url: str) -> BinaryIO:
    """The default ``open_shard``: the file, buffered for one sequential pass."""
    return open(url, "rb", buffering=BUFFER)


def shard_samples(
    url: str, suffixes: Collection[str], open_shard: Opener = open_tar
) -> Iterator[dict[str, Any]]:
    """The samples of one tar, with the bytes of the members whose suffix is in ``suffixes``."""
    sample: dict[str, Any] | None = None
    with open_shard(url) as f:
        for key, suffix, data in tar_members(f, suffixes):
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key, "__url__": url}
            if suffix in sample:
                raise ValueError(f"{key}.{suffix}: duplicate member in the tar")
            if data is not None:
                sample[suffix] = data
    if sample is not None:
        yield sample


def tar_samples(
    shards: Iterable[dict[str, Any]],
    handler: Callable[[BaseException], bool],
    suffixes: Collection[str],
    open_shard: Opener = open_tar,
) -> Iterator[dict[str, Any]]:
    """The samples of each ``{"url": path}`` in turn (a drop-in for ``wds.tarfile_to_samples``)."""
    for item in shards:
        url = item["url"]
        try:
            yield from shard_samples(url, suffixes, open_shard)
        except UsageError:
            raise
        except Exception as exn:  # the handler decides, as in webdataset
            exn.args = (*exn.args, url)
            if not handler(exn):
                return

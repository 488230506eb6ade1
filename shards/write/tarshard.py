"""Deterministic WebDataset tar shards: fixed headers, exact byte accounting, atomic rename.

Every member gets the same mtime, owner and mode, so the same samples in the same order give a
byte-identical tar. A shard is written under a temporary name and renamed when closed.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from pathlib import Path

from common.atomic import atomic_path
from common.integrity import sha256_file

MTIME = 0  # fixed, so that a rebuild gives the same bytes
MODE = 0o644
FORMAT = tarfile.PAX_FORMAT  # plain ustar headers unless a name is longer than 100 characters
SHARD_PATTERN = "lup-%06d.tar"


def shard_name(number: int) -> str:
    return SHARD_PATTERN % number


def member_info(name: str, size: int) -> tarfile.TarInfo:
    """A regular-file header with the fixed fields."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = MTIME
    info.mode = MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def member_bytes(name: str, size: int) -> int:
    """Bytes one member takes in the archive: its header(s) plus data padded to 512."""
    if name.isascii() and len(name) <= tarfile.LENGTH_NAME and size < 8**11:
        header = tarfile.BLOCKSIZE  # one plain ustar header, no pax extension (checked in the tests)
    else:
        header = len(member_info(name, size).tobuf(FORMAT, tarfile.ENCODING, "surrogateescape"))
    return header + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def closed_size(offset: int) -> int:
    """File size of an archive whose members end at ``offset``: two zero blocks, padded to a record."""
    end = offset + 2 * tarfile.BLOCKSIZE
    return -(-end // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class ShardWriter:
    """One open shard: ``add(key, {ext: bytes})``, then ``close()`` renames it into place.

    ``fits(files)`` says whether a sample still fits under ``max_samples`` and ``max_bytes``
    (the closed file size, exactly); an empty shard always accepts one sample. ``reserve`` counts
    a sample against both caps without writing it: a taken-down crop keeps its place, so the
    shard closes where it would have closed with the crop in it.
    """

    def __init__(self, path: Path, max_samples: int, max_bytes: int) -> None:
        self.path = path
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.n_samples = 0  # written
        self.slots = 0  # written and reserved
        self.reserved = 0  # bytes the reserved samples would take
        self.keys: list[str] = []
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(path))
        # open across many add() calls; the ExitStack closes it in close() / abort()
        self._tar = self._stack.enter_context(tarfile.open(self._tmp, "w", format=FORMAT))  # noqa: SIM115

    def sample_bytes(self, key: str, files: dict[str, bytes]) -> int:
        return sum(member_bytes(f"{key}.{ext}", len(data)) for ext, data in files.items())

    def fits(self, key: str, files: dict[str, bytes]) -> bool:
        if self.slots == 0:
            return True
        if self.slots >= self.max_samples:
            return False
        end = self._tar.offset + self.reserved + self.sample_bytes(key, files)
        return closed_size(end) <= self.max_bytes

    def add(self, key: str, files: dict[str, bytes]) -> None:
        """Append one sample; members in sorted extension order."""
        for ext in sorted(files):
            data = files[ext]
            self._tar.addfile(member_info(f"{key}.{ext}", len(data)), io.BytesIO(data))
        self.keys.append(key)
        self.n_samples += 1
        self.slots += 1

    def reserve(self, key: str, files: dict[str, bytes]) -> None:
        """Count one sample against the caps, as ``add`` would, without writing it."""
        self.reserved += self.sample_bytes(key, files)
        self.slots += 1

    def close(self) -> dict[str, object]:
        """Finish the archive, rename it into place and return its index row."""
        self._tar.close()
        digest = sha256_file(self._tmp)
        size = self._tmp.stat().st_size
        self._stack.close()  # fsync + os.replace onto the final name
        return {"shard": self.path.name, "n_samples": self.n_samples, "bytes": size, "sha256": digest}

    def abort(self) -> None:
        """Drop the partial file (the final name is left as it was)."""
        with contextlib.suppress(OSError):
            self._tar.close()
        self._stack.pop_all()  # forget the rename
        self._tmp.unlink(missing_ok=True)

"""shards.release.tarindex against Python's tarfile: same names, data offsets and sizes; bad archives refused."""

from __future__ import annotations

import io
import tarfile

import pytest

from shards.release.tarindex import members, read_members

NAMES = ["a.jpg", "d" * 90 + "/" + "x" * 60 + ".json", "k" * 120 + ".jpg", "ünï.json", "empty.jpg"]


def make_tar(fmt: int, names: list[str] = NAMES) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for n, name in enumerate(names):
            data = bytes(range(256)) * n + b"tail" * (n != 4)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_members_match_tarfile(fmt, tmp_path):
    # ustar holds neither the 124-character name nor non-ASCII; its prefix field holds the long path
    names = [n for n in NAMES if n.isascii() and len(n) < 124] if fmt == tarfile.USTAR_FORMAT else NAMES
    data = make_tar(fmt, names)
    path = tmp_path / "t.tar"
    path.write_bytes(data)
    with tarfile.open(path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
    assert [tuple(m) for m in read_members(path)] == expected
    assert [m[0] for m in expected] == names
    for name, offset, size in expected:  # the offsets point at the member's bytes
        with tarfile.open(path) as tar:
            assert data[offset : offset + size] == tar.extractfile(name).read()


def test_bad_archives_are_refused():
    data = make_tar(tarfile.PAX_FORMAT)
    with pytest.raises(ValueError, match="ends inside a header"):
        list(members(io.BytesIO(data[:1000])))
    flipped = bytearray(data)
    flipped[3] ^= 0xFF  # inside the first header's name
    with pytest.raises(ValueError, match="checksum"):
        list(members(io.BytesIO(bytes(flipped))))

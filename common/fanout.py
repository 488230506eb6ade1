"""Fanned-out folders: one logical folder of many files kept as a few hundred small real ones.

A folder holding one file per video (73,000 after a full crawl) or per crop breaks listing tools
and network file systems past ~50,000 entries, and a lookup by pattern (``glob("<id>.*")``) in it
reads every entry, so a loop of such lookups grows with the square of the count. Here the file of
``key`` lives in the bucket ``<folder>/<bucket(key)>/``: the first ``digits`` hex digits of the
SHA-1 of the key (2 digits: 256 buckets, ~285 files each at 73,000 keys; 3: 4,096 buckets,
~1,000 each at 4.18M). The bucket depends on the key alone, so a reader finds a file without
listing anything, and the layout is the same on every machine and run.

    >>> bucket("dQw4w9WgXcQ")
    '3d'
    >>> fanned_path(Path("videos"), "dQw4w9WgXcQ", "dQw4w9WgXcQ.mp4").as_posix()
    'videos/3d/dQw4w9WgXcQ.mp4'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

DIGITS = 2  # 256 buckets


def bucket(key: str, digits: int = DIGITS) -> str:
    """The bucket folder name of ``key``: its SHA-1's first ``digits`` hex digits."""
    if not 1 <= digits <= 40:
        raise ValueError(f"digits must be 1-40, got {digits}")
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:digits]


def fanned_path(folder: Path, key: str, name: str | None = None, digits: int = DIGITS) -> Path:
    """``<folder>/<bucket(key)>/<name>`` (``name`` defaults to ``key``); nothing is created."""
    return Path(folder) / bucket(key, digits) / (key if name is None else name)


def fanned_files(folder: Path, digits: int = DIGITS) -> Iterator[Path]:
    """Every file in the buckets of ``folder`` (bucket by bucket, each sorted by name); none when
    ``folder`` does not exist. Entries that are not buckets of this width are not listed."""
    try:
        buckets = sorted(e.name for e in os.scandir(folder) if e.is_dir() and _is_bucket(e.name, digits))
    except FileNotFoundError:
        return
    for name in buckets:
        files = sorted(e.name for e in os.scandir(Path(folder) / name) if e.is_file())
        yield from (Path(folder) / name / f for f in files)


def _is_bucket(name: str, digits: int) -> bool:
    return len(name) == digits and all(c in "0123456789abcdef" for c in name)

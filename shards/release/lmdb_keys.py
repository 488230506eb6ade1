"""Official LUPerson LMDB keys for the samples of a build.

The release (``LUP/convert_lmdb.py``) walks ``<country>/<city>/<video>/<image>.jpg``, each level in
sorted order, and keys every image ``{country_idx:02d}_{city_idx:02d}_{video_idx:04d}_{image_idx:08d}``
(0-based positions among the sorted names that hold images). A sample's place in that tree
comes from its JSON metadata:

- ``dets`` (``--from-dets``): country, city, YouTube id; images by ``(frame_id, obj_idx)``, the order
  of the release's crop names ``{frame_id:08d}_{obj_idx:04d}.jpg``.
- ``detections`` (the pipeline's own detections): country ``""`` (one country, index 00), the
  crawl's city, video id; images by ``(frame, box)``.
- ``images`` (``--from-images``): by the folders of the image's path relative to DIR: three or more
  levels -> ``country/city/video...``, two -> city/video, one -> video, none -> all ``""``;
  images by path. So the release's extracted tree ``<country>/<city>/<video>/*.jpg`` keeps its keys.
- ``lmdb`` (``--from-lmdb``): the numbers of the original key, so an LMDB without gaps is
  re-exported with its own keys.

Indices past the field width just grow it (``100_...``); keys stay unique. :func:`format_key` writes
a key and :func:`parse_key` reads one back; every writer and reader of the key format calls them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T", bound=tuple)
_KEY_SHAPE = re.compile(r"([0-9]+)_([0-9]+)_([0-9]+)_([0-9]+)")


class LmdbKey(NamedTuple):
    """The four indices of an official key; as a tuple, the order the release lists its keys in."""

    country: int
    city: int
    video: int
    image: int


def format_key(country: int, city: int, video: int, image: int) -> str:
    """``(1, 0, 3, 2)`` -> ``"01_00_0003_00000002"``: the release's ``{:02d}_{:02d}_{:04d}_{:08d}``."""
    return f"{country:02d}_{city:02d}_{video:04d}_{image:08d}"


def parse_key(key: str) -> LmdbKey | None:
    """``"01_00_0003_00000002"`` -> ``LmdbKey(1, 0, 3, 2)``; ``None`` for a key ``format_key`` cannot write.

    The exact inverse of :func:`format_key`: the release's field widths, or wider without leading
    zeros where an index outgrew its width (``100_00_0000_00000000``).
    """
    m = _KEY_SHAPE.fullmatch(key)
    if not m:
        return None
    fields = LmdbKey(*(int(g) for g in m.groups()))
    return fields if format_key(*fields) == key else None


class Place(NamedTuple):
    country: str
    city: str
    video: str
    order: tuple  # sorts the images of one video


def place(meta: dict[str, Any], key: str) -> Place:
    """Where a sample sits in the release's ``country/city/video`` tree."""
    source = meta.get("source")
    if source == "dets":
        return Place(
            meta["country"], meta["city"], meta["video_id"], (meta["frame_id"], meta["obj_idx"], key)
        )
    if source == "lmdb" and "image" in meta:
        c, ci, v = (f"{meta[f]:08d}" for f in ("country", "city", "video"))
        return Place(c, ci, v, (meta["image"], key))
    if source == "images":
        folders = tuple(part for part in meta["path"].split("/")[:-1] if part)
        if len(folders) >= 3:
            country, city, video = folders[0], folders[1], "/".join(folders[2:])
        else:
            country, city, video = ("", "", "", *folders)[-3:]
        return Place(country, city, video, (meta["path"], key))
    if "video_id" in meta and "frame" in meta:
        return Place("", meta.get("city") or "", meta["video_id"], (meta["frame"], meta.get("box", 0), key))
    return Place("", "", "", (key,))


def order_text(order: tuple) -> str:
    """``order`` (ints and strings) as one string that sorts as the tuple does, so a sort on disk
    can hold it: an int as ``i`` and 20 digits (offset by 2**63), a string as ``s`` and itself,
    joined by NUL (below every character of a name). ``ValueError`` for anything else.

    >>> order_text((12, "a")) < order_text((12, "ab")) < order_text((13, "")) < order_text(("x",))
    True
    """
    parts = []
    for value in order:
        if isinstance(value, int) and -(2**63) <= value < 2**63:
            parts.append(f"i{value + 2**63:020d}")
        elif isinstance(value, str):
            parts.append("s" + value)
        else:
            raise ValueError(f"cannot order by {value!r}")
    return "\0".join(parts)


def official_keys(places: Iterable[T]) -> Iterator[tuple[str, T]]:
    """``(LMDB key, place)`` of each place: tuples starting ``(country, city, video, ...)``, sorted
    as the release walks its tree (by those, then by the images' order), so each key is the
    positions of its country, city, video and image among those before it."""
    last: tuple | None = None
    i = j = k = m = -1
    for p in places:
        if last is None or p[0] != last[0]:
            i, j, k, m = i + 1, 0, 0, 0
        elif p[1] != last[1]:
            j, k, m = j + 1, 0, 0
        elif p[2] != last[2]:
            k, m = k + 1, 0
        else:
            m += 1
        last = p[:3]
        yield format_key(i, j, k, m), p

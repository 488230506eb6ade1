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
from collections import defaultdict
from typing import Any, NamedTuple

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


def official_keys(places: list[Place]) -> list[str]:
    """The LMDB key of each place (same order as ``places``)."""
    tree: dict[str, dict[str, dict[str, list[int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for n, p in enumerate(places):
        tree[p.country][p.city][p.video].append(n)
    keys = [""] * len(places)
    for i, country in enumerate(sorted(tree)):
        for j, city in enumerate(sorted(tree[country])):
            for k, video in enumerate(sorted(tree[country][city])):
                members = sorted(tree[country][city][video], key=lambda n: places[n].order)
                for m, n in enumerate(members):
                    keys[n] = format_key(i, j, k, m)
    return keys

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

Indices past the field width just grow it (``100_...``); keys stay unique.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple


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
                    keys[n] = f"{i:02d}_{j:02d}_{k:04d}_{m:08d}"
    return keys


def enumeration_order(key: str) -> tuple[int, ...]:
    """``"01_00_0003_00000002"`` -> ``(1, 0, 3, 2)``: the order the release lists its keys in."""
    return tuple(int(part) for part in key.split("_"))

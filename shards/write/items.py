"""What flows from a sample source to the shard writer: tasks of keyed items, and their results.

A source (detections, an image folder, an LMDB) plans a sequence of :class:`Task` in sorted key
order (a list, or for one item per crop a ``shards.write.task_file.TaskFile`` read from disk); a
worker turns one task into one :class:`Result` per item; the writer appends the good ones to
shards and records every one of them in ``shards/samples.parquet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from common.manifests import samples
from common.media.images import decode_bgr, encode_jpeg, is_jpeg, to_bgr
from shards.write.faces import Encoding


@dataclass(frozen=True)
class Item:
    """One planned sample: its key and what the worker needs to make it."""

    key: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A unit of worker work: consecutive items that share a context (e.g. one video)."""

    kind: str  # which worker function runs it (see shards.sources.pick)
    context: dict[str, Any]
    items: tuple[Item, ...]


@dataclass
class Result:
    """A worker's answer for one item: the files of a good sample, or none and a failure code."""

    key: str
    files: dict[str, bytes] | None
    record: dict[str, Any]


def record(key: str, **values: Any) -> dict[str, Any]:
    """A full samples.parquet row (one per planned item): defaults overridden by ``values``."""
    unknown = set(values) - set(samples.DEFAULTS)
    if unknown:
        raise KeyError(f"unknown record fields: {sorted(unknown)}")
    return {**samples.DEFAULTS, "key": key, **values}


def failed(key: str, status: str, reason: str, **values: Any) -> Result:
    return Result(key, None, record(key, status=status, reason=reason, **values))


def faces_blurred(meta: dict[str, Any]) -> int:
    """samples.parquet's ``faces``: regions blurred in the crop, -1 when blurring was off."""
    return int(meta["faces"]["blurred"]) if "faces" in meta else -1


def metadata_json(meta: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the same metadata always gives the same bytes."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def image_sample(key: str, data: bytes, encoding: Encoding, meta: dict[str, Any], **values: Any) -> Result:
    """A sample from encoded image bytes: JPEG kept byte-for-byte, other formats (and a crop whose
    faces were blurred) re-encoded.

    The bytes are always decoded once, so a corrupt or truncated file is caught here.
    """
    import cv2

    if not data:
        return failed(key, "empty", "the file is empty", **values)
    try:
        pixels = decode_bgr(data)
    except cv2.error as e:
        return failed(key, "corrupt", f"OpenCV: {e}".strip(), **values)
    if pixels is None or pixels.size == 0:
        why = "OpenCV cannot decode the image (corrupt, truncated or unknown)"
        return failed(key, "corrupt", why, **values)
    height, width = pixels.shape[:2]
    keep = is_jpeg(data)
    try:
        bgr = None if keep and not encoding.blur_faces else to_bgr(pixels)
        if encoding.blur_faces:
            blurred, faces = encoding.blur(bgr)
            keep = keep and blurred is bgr  # no face: the JPEG stays as it was
            bgr, meta = blurred, {**meta, **faces}
        jpg = data if keep else encode_jpeg(bgr, encoding.quality)
    except (cv2.error, ValueError) as e:
        why = f"cannot re-encode {pixels.shape} {pixels.dtype} pixels as JPEG: {e}"
        return failed(key, "unencodable", why, **values)
    meta = {**meta, "width": width, "height": height, "reencoded": not keep}
    files = {"jpg": jpg, "json": metadata_json(meta)}
    blurred = faces_blurred(meta)
    return Result(
        key, files, record(key, width=width, height=height, bytes=len(jpg), faces=blurred, **values)
    )

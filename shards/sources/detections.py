"""The normal path of ``build-shards``: cut the valid person boxes out of re-decoded frames.

Reads ``video_filter.parquet`` (kept videos: path, city; ``common.manifests.video_filter``) and ``detections/<video_id>.parquet``
(rows with ``valid == True``), re-decodes each needed frame with ``common.media.frames.read_frames`` and
cuts each box. Box edges are rounded outwards to whole pixels (``floor`` of x1/y1, ``ceil`` of
x2/y2), so the crop contains the whole detected box, then clipped to the frame. Crops are
encoded as JPEG (quality 95 by default) with OpenCV. A box ``detect --tracks`` put in a tracklet
carries its id in the crop's JSON (``"tracklet"``); other crops have no such key.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from common.manifests import boxes, video_filter, videos
from common.manifests.samples import sample_key
from common.media.images import encode_jpeg
from shards.write.cut import cut_video
from shards.write.faces import Encoding
from shards.write.items import Item, Result, Task, faces_blurred, failed, metadata_json, record

log = logging.getLogger(__name__)
BOX_COLUMNS = ["video_id", "frame", "box", "x1", "y1", "x2", "y2", "score", "keypoints", "valid", "tracklet"]


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def video_items(rows) -> list[Item]:
    """Items of one video's valid detection rows."""
    items = []
    for r in rows.itertuples(index=False):
        keypoints = [] if r.keypoints is None else [_finite(v) for v in np.asarray(r.keypoints).ravel()]
        payload = {
            "frame": int(r.frame),
            "box": int(r.box),
            "xyxy": [float(r.x1), float(r.y1), float(r.x2), float(r.y2)],
            "score": _finite(r.score),
            "keypoints": keypoints,
        }
        tracklet = getattr(r, "tracklet", None)
        if isinstance(tracklet, str):
            payload["tracklet"] = tracklet  # only then: items (and the plan) without stay as they were
        items.append(Item(sample_key(str(r.video_id), int(r.frame), int(r.box)), payload))
    return items


def read_items(root: Path, video_id: str) -> list[Item] | None:
    """The items of a video's valid boxes (``detections/<bucket>/<id>.parquet``), None without a file."""
    det_file = boxes.path_of(root, video_id)
    if not det_file.is_file():
        return None
    rows = boxes.read(det_file, BOX_COLUMNS)
    return video_items(rows[rows["valid"].astype(bool)])


def video_context(root: Path, video) -> dict[str, Any]:
    """A task's context (a ``video_filter.parquet`` row): the video's id, absolute path, city, and
    its provenance for the crops' JSON: the source URL (None for a local file) and licence."""
    import pandas as pd

    city = getattr(video, "city", None)
    return {
        "video_id": str(video.video_id),
        "path": str(root / str(video.path)),
        "city": "" if city is None or pd.isna(city) else str(city),
        **videos.provenance(getattr(video, "url", None), getattr(video, "license", None)),
    }


def video_task(root: Path, video) -> Task | None:
    """The task of one kept video (a ``video_filter.parquet`` row), its items in key order, as
    ``plan`` makes it when no other video's keys interleave; None when it has no detections file.
    The streaming build cuts each video with it."""
    found = read_items(root, str(video.video_id))
    if found is None:
        return None
    return Task("detections", video_context(root, video), tuple(sorted(found, key=lambda item: item.key)))


def plan(root: Path) -> tuple[list[Task], dict[str, Any]]:
    """One task per kept video with detections (split only where keys of two videos interleave)."""

    absent = "run filter and detect first, or use --from-images / --from-lmdb"
    kept = video_filter.kept(root, absent=absent).sort_values("video_id")
    contexts: dict[str, dict[str, Any]] = {}
    items: list[tuple[str, Item]] = []
    without, duplicates = [], 0
    for v in kept.itertuples(index=False):
        vid = str(v.video_id)
        found = read_items(root, vid)
        if found is None:
            without.append(vid)
            continue
        contexts[vid] = video_context(root, v)
        items.extend((vid, item) for item in found)
    items.sort(key=lambda pair: pair[1].key)
    unique: list[tuple[str, Item]] = []
    for pair in items:
        if unique and unique[-1][1].key == pair[1].key:
            duplicates += 1
        else:
            unique.append(pair)
    if without:
        log.warning("%d kept videos have no detections file (detect not run?): %s", len(without), without[:5])
    if duplicates:
        log.warning("%d duplicate (video, frame, box) rows dropped", duplicates)
    tasks = [
        Task("detections", contexts[vid], tuple(item for _, item in group))
        for vid, group in itertools.groupby(unique, key=lambda pair: pair[0])
    ]
    counts = {
        "kept_videos": len(kept),
        "videos_with_detections": len(contexts),
        "videos_without_detections": len(without),
        "duplicate_rows": duplicates,
    }
    return tasks, counts


def crop_box(xyxy: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Whole-pixel crop of a float box: edges rounded outwards, clipped to the frame."""
    x1, y1, x2, y2 = xyxy
    return (
        max(0, math.floor(x1)),
        max(0, math.floor(y1)),
        min(width, math.ceil(x2)),
        min(height, math.ceil(y2)),
    )


def cut(item: Item, frame: np.ndarray, context: dict[str, Any], encoding: Encoding) -> Result:
    """One crop of one frame as a sample (``empty_box`` when nothing is left after clipping)."""
    p = item.payload
    values = _values(context, p)
    if not all(math.isfinite(v) for v in p["xyxy"]):
        return failed(item.key, "bad_box", f"non-finite box {p['xyxy']}", **values)
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = crop_box(p["xyxy"], w, h)
    if x2 <= x1 or y2 <= y1:
        return failed(item.key, "empty_box", f"box {p['xyxy']} is outside the {w}x{h} frame", **values)
    pixels, faces = encoding.blur(frame[y1:y2, x1:x2], p["keypoints"], (x1, y1))
    jpg = encode_jpeg(pixels, encoding.quality)
    meta = {
        "video_id": context["video_id"],
        "city": context["city"],
        "url": context.get("url"),
        "license": context.get("license"),
        "frame": p["frame"],
        "box": p["box"],
        "score": p["score"],
        "keypoints": p["keypoints"],
        "box_xyxy": p["xyxy"],
        "crop_xyxy": [x1, y1, x2, y2],
        "source_width": w,
        "source_height": h,
        **faces,
    }
    if "tracklet" in p:
        meta["tracklet"] = p["tracklet"]
    files = {"jpg": jpg, "json": metadata_json(meta)}
    return Result(
        item.key,
        files,
        record(item.key, width=x2 - x1, height=y2 - y1, bytes=len(jpg), faces=faces_blurred(meta), **values),
    )


def _values(context: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The samples.parquet fields of one box, cut or not."""
    return {
        "source": "detections",
        "source_id": context["path"],
        "video_id": context["video_id"],
        "city": context["city"],
        "license": context.get("license") or "",
        "frame": payload["frame"],
        "box": payload["box"],
        "score": math.nan if payload["score"] is None else payload["score"],
    }


def run(task: Task, encoding: Encoding) -> list[Result]:
    """Decode the task's frames once each, in order, and cut every box."""
    ctx = task.context
    by_frame: dict[int, list[Item]] = {}
    for item in task.items:
        by_frame.setdefault(item.payload["frame"], []).append(item)
    return cut_video(
        ctx["path"],
        task.items,
        by_frame,
        lambda item, frame: cut(item, frame, ctx, encoding),
        lambda item, status, reason: failed(item.key, status, reason, **_values(ctx, item.payload)),
    )

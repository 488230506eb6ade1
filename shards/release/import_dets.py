"""``build-shards --from-dets PATH``: cut exactly the released LUPerson boxes from the crawled videos.

Each video of the detections (:mod:`shards.release.dets_input`) is matched by its ``vnames.txt`` line
(parsed by :func:`common.release.vnames.parse_vname`, as crawl parses it) to
the ``videos.parquet`` row with the same ``vname`` (written by ``crawl --from-vnames``). Boxes
are cut as the release's ``LUP/extract.py`` does: the frame ``frame_id - 1`` (decoded with
``common.media.frames.read_frames``), ``bbox.round()`` (NumPy, half to even) and
``frame[y1:y2, x1:x2]``, JPEG quality 95 (``cv2.imwrite``'s default).

Geometry: the release does not store the frame size nor the frame rate. With calibration (the
default, :mod:`shards.release.calibrate`) each video is checked against a person detector
before any crop is cut: it is cut with the scale and frame offset that agree clearly, else its boxes
are recorded as ``unverified`` (or ``mismatch``) and none is cut. Without it (``--calibrate none``):
when a size is stated (a ``size`` entry in the pickle, else ``--dets-size WxH``) and differs from
the decoded frame, boxes are scaled to the frame (same aspect ratio only), and a video with any
(scaled, rounded) box outside its frame is not at the resolution the boxes were found at
(:class:`Mismatch`): none of its crops is written (``resolution_mismatch``). ``--cut-unverified``
cuts a video calibration did not verify the same way.

Key: ``<video_id>_<frame_id:08d>_<obj_idx:03d>`` (the release's 1-based frame id and object
index; the YouTube id has no dots and is unique in the list). The JSON keeps country, city,
vname, video_id, frame_id, frame (0-based), obj_idx, the boxes and the frame size.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UsageError
from common.manifests.videos import provenance
from common.media.images import encode_jpeg
from common.release.vnames import parse_vname
from shards.release import calibrate, dets_input
from shards.settings import Calibration, parse_size
from shards.write.cut import Cut, Refused, cut_video
from shards.write.faces import Encoding
from shards.write.items import Item, Result, Task, faces_blurred, failed, metadata_json, record

log = logging.getLogger(__name__)


ASPECT_TOLERANCE = 0.01  # relative difference of the x and y scales still treated as one aspect ratio


class Mismatch(Exception):
    """The decoded frames do not have the size the released boxes were found at."""


def extent(boxes: list[Any]) -> list[float] | None:
    """``[min x1, min y1, max x2, max y2]`` over the usable boxes (checked against the frame)."""
    usable = [b.bbox for b in boxes if b.frame_id >= 1 and b.bbox and all(map(math.isfinite, b.bbox))]
    if not usable:
        return None
    a = np.array(usable)
    return [float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()), float(a[:, 3].max())]


def fit(context: dict[str, Any], height: int, width: int) -> tuple[float, float, str]:
    """``(x scale, y scale, note)`` mapping the released boxes onto a ``width`` x ``height`` frame.

    Raises :class:`Mismatch` when they cannot be mapped or some box falls outside the frame.
    """
    sx = sy = 1.0
    note = ""
    if context["size"] and tuple(context["size"]) != (width, height):
        w0, h0 = context["size"]
        sx, sy = width / w0, height / h0
        if abs(sx / sy - 1) > ASPECT_TOLERANCE:
            raise Mismatch(
                f"the video is {width}x{height} but the boxes were found at {w0}x{h0} "
                f"(from the {context['size_from']}): another aspect ratio, cannot rescale"
            )
        note = f"boxes rescaled from {w0}x{h0} to {width}x{height}"
    if context["extent"]:
        x1, y1, x2, y2 = (int(v) for v in np.round(np.array(context["extent"]) * [sx, sy, sx, sy]))
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            hint = (
                ""
                if context["size"]
                else "; if the original size is known, state it (--dets-size WxH) to rescale"
            )
            raise Mismatch(
                f"boxes reach x {x1}..{x2}, y {y1}..{y2}, beyond the {width}x{height} frame: the video is "
                f"not at the resolution the boxes were found at{hint}"
            )
    return sx, sy, note


def calibrated_scale(geometry: dict[str, Any]) -> tuple[float, float, str]:
    """``(x scale, y scale, note)`` of a verified calibration (one scale for both axes)."""
    s, offset = geometry["scale"], geometry["offset"]
    notes = [f"boxes rescaled x{s:g} by calibration"] if s != 1 else []
    notes += [f"frames shifted by {offset:+d} by calibration"] if offset else []
    return s, s, "; ".join(notes)


def sample_key(video_id: str, frame_id: int, obj_idx: int) -> str:
    return f"{video_id}_{frame_id:08d}_{obj_idx:03d}"


def manifest_rows(root: Path) -> dict[str, dict[str, Any]]:
    """``vname -> videos.parquet row`` for the rows crawl --from-vnames wrote."""
    import pandas as pd

    path = root / "videos.parquet"
    if not path.is_file():
        raise UsageError(f"{path} does not exist: run crawl --from-vnames vnames.txt first")
    videos = pd.read_parquet(path)
    missing = {"vname", "status", "path"} - set(videos.columns)
    if missing:
        raise UsageError(f"{path} lacks columns {sorted(missing)}: run crawl --from-vnames vnames.txt")
    listed = videos[videos["vname"].notna()]
    return {str(r["vname"]): r for r in listed.to_dict("records")}


def match(vname: str, rows: dict[str, dict[str, Any]], root: Path) -> tuple[str, str, str | None]:
    """``(status, reason, video path)`` of one video of the detections."""
    row = rows.get(vname)
    if row is None:
        return "not_listed", "not in videos.parquet: list it in vnames.txt and run crawl --from-vnames", None
    if row["status"] != "ok":
        import pandas as pd

        reason = "" if pd.isna(row.get("reason")) else str(row["reason"])
        return "not_downloaded", f"crawl status {row['status']}: {reason}".rstrip(": "), None
    path = root / str(row["path"])
    if not path.is_file():
        return "video_missing", f"downloaded, but {path} is gone: rerun crawl --from-vnames", None
    return "ok", "", str(path)


def owners(videos: list[dets_input.VideoDets], rows: dict[str, Any]) -> dict[str, str]:
    """``video_id -> vname`` that keeps it when several lines name one video: the line crawl listed, else the first."""
    chosen: dict[str, str] = {}
    for video in videos:
        try:
            video_id = parse_vname(video.vname)[2]
        except ValueError:
            continue
        if video_id not in chosen or (video.vname in rows and chosen[video_id] not in rows):
            chosen[video_id] = video.vname
    return chosen


def video_plan(
    video: dets_input.VideoDets,
    rows,
    root: Path,
    size,
    owner: dict[str, str],
    calibration: Calibration | None = None,
    will_download: bool = False,
):
    """``(context, items)`` of one video of the detections (``calibration``: a ``Calibration`` or None;
    ``will_download``: a video listed in ``videos.parquet`` is planned as downloaded, the streaming
    build matching it with ``match`` once it is)."""
    context: dict[str, Any] = {"vname": video.vname, "origin": video.origin, "path": None, "boxes": 0}
    context |= {"country": "", "city": "", "video_id": "", "size": None, "size_from": None, "extent": None}
    context |= {"malformed": [], "duplicates": 0, "ignored_keys": []}
    try:
        country, city, video_id = parse_vname(video.vname)
    except ValueError as e:
        return context | {"status": "bad_vname", "reason": str(e)}, []
    listed = rows.get(video.vname) or {}
    context |= {"country": country, "city": city, "video_id": video_id}
    context |= provenance(listed.get("url"), listed.get("license"))
    if owner[video_id] != video.vname:
        return context | {
            "status": "duplicate_video",
            "reason": f"video id already given as {owner[video_id]}",
        }, []
    if video.error:
        return context | {"status": "bad_dets", "reason": video.error}, []
    try:
        parsed = dets_input.parse(video.dets)
    except ValueError as e:
        return context | {"status": "bad_dets", "reason": str(e)}, []
    if will_download and video.vname in rows:
        status, reason, path = "ok", "", None
    else:
        status, reason, path = match(video.vname, rows, root)
    stated = parsed.size or size
    context |= {"status": status, "reason": reason, "path": path, "boxes": len(parsed.boxes)}
    context |= {"size": list(stated) if stated else None, "extent": extent(parsed.boxes)}
    context |= {"size_from": "pickle" if parsed.size else "dets_size" if size else None}
    context |= {"malformed": parsed.malformed, "duplicates": parsed.duplicates}
    context |= {"ignored_keys": parsed.ignored_keys}
    if parsed.malformed:
        log.warning(
            "%s: %d malformed entries skipped, e.g. %s",
            video.vname,
            len(parsed.malformed),
            parsed.malformed[0],
        )
    if calibration is not None and status == "ok":
        context["calibration"] = calibrate.plan_context(calibration, parsed.boxes, root)
    items = [
        Item(
            sample_key(video_id, b.frame_id, b.obj_idx),
            {"frame_id": b.frame_id, "obj_idx": b.obj_idx, "bbox": b.bbox, "det": b.extra},
        )
        for b in parsed.boxes
    ]
    return context, items


def plan(
    path: str,
    root: Path,
    dets_size: str | None,
    calibration: Calibration | None = None,
    will_download: bool = False,
) -> tuple[list[Task], dict[str, Any]]:
    """One task per video (videos without boxes too: their context carries the report's figures).

    ``calibration`` (:func:`calibrate.from_settings`): check each video before cutting it;
    ``None`` cuts as the boxes say (``--calibrate none``). ``will_download``: see ``video_plan``.
    """
    if calibration is not None:
        calibrate.check_detector(calibration)
    videos = dets_input.load(path)
    rows = manifest_rows(root)
    size = parse_size(dets_size) if dets_size else None
    owner = owners(videos, rows)
    contexts, pairs = [], []
    for video in videos:
        context, items = video_plan(video, rows, root, size, owner, calibration, will_download)
        video.dets = None  # the parsed items hold what is needed; a bundle of 46,260 videos is large
        contexts.append(context)
        pairs.extend((len(contexts) - 1, item) for item in items)
    pairs.sort(key=lambda pair: pair[1].key)
    tasks = [
        Task("dets", contexts[n], tuple(item for _, item in group))
        for n, group in itertools.groupby(pairs, key=lambda pair: pair[0])
    ]
    with_items = {n for n, _ in pairs}
    tasks += [Task("dets", c, ()) for n, c in enumerate(contexts) if n not in with_items]
    counts = {"dets_videos": len(contexts), "dets_boxes": len(pairs)}
    return tasks, counts


def cut(
    item: Item,
    frame: np.ndarray,
    context: dict[str, Any],
    scale: tuple[float, float, str],
    encoding: Encoding,
    geometry: dict[str, Any] | None = None,
) -> Result:
    """The released box of one item, cut the release's way (``round()``, no clipping needed);
    ``geometry`` (calibrated videos only) goes into the crop's JSON."""
    p = item.payload
    sx, sy, note = scale
    height, width = frame.shape[:2]
    box = [v * s for v, s in zip(p["bbox"], (sx, sy, sx, sy), strict=True)]
    x1, y1, x2, y2 = (int(v) for v in np.round(np.array(box)))
    offset = geometry["offset"] if geometry else 0
    values = _values(context, p, offset)
    if x2 <= x1 or y2 <= y1:
        return failed(item.key, "empty_box", f"box {p['bbox']} rounds to an empty crop", **values)
    pixels, faces = encoding.blur(frame[y1:y2, x1:x2])
    jpg = encode_jpeg(pixels, encoding.quality)
    meta = {
        "source": "dets",
        "vname": context["vname"],
        "country": context["country"],
        "city": context["city"],
        "video_id": context["video_id"],
        "url": context.get("url"),
        "license": context.get("license"),
        "frame_id": p["frame_id"],
        "frame": p["frame_id"] - 1 + offset,
        "obj_idx": p["obj_idx"],
        "bbox": p["bbox"],
        "box_xyxy": box,
        "crop_xyxy": [x1, y1, x2, y2],
        "source_width": width,
        "source_height": height,
        "dets_size": context["size"],
        "det": p["det"],
        **faces,
    }
    if geometry is not None:
        meta["geometry"] = geometry
    files = {"jpg": jpg, "json": metadata_json(meta)}
    size = {"width": x2 - x1, "height": y2 - y1, "bytes": len(jpg), "faces": faces_blurred(meta)}
    rec = record(item.key, reason=note, **size, **values)
    return Result(item.key, files, rec)


def _values(context: dict[str, Any], payload: dict[str, Any], offset: int = 0) -> dict[str, Any]:
    score = payload["det"].get("score")
    return {
        "source": "dets",
        "source_id": context["vname"],
        "video_id": context["video_id"],
        "country": context["country"],
        "city": context["city"],
        "license": context.get("license") or "",
        "frame": payload["frame_id"] - 1 + offset,
        "box": payload["obj_idx"],
        "score": float(score) if isinstance(score, int | float) and not isinstance(score, bool) else math.nan,
    }


def unusable(context: dict[str, Any], payload: dict[str, Any]) -> tuple[str, str] | None:
    """``(status, reason)`` when a box cannot be cut whatever the video holds, else None."""
    if context["status"] != "ok":
        return context["status"], context["reason"]
    if payload["bbox"] is None or not all(map(math.isfinite, payload["bbox"])):
        return "bad_box", f"bbox {payload['bbox']} is not four finite numbers x1, y1, x2, y2"
    if payload["frame_id"] < 1:
        return "bad_frame", f"frame_id {payload['frame_id']}: the release's frame ids start at 1"
    return None


def run(task: Task, encoding: Encoding) -> list[Result]:
    """Calibrate the video (when asked), decode the task's frames once each, in order, cut every usable box."""
    ctx = task.context
    early: dict[str, Result] = {}
    usable: list[Item] = []
    for item in task.items:
        why = unusable(ctx, item.payload)
        if why:
            early[item.key] = failed(item.key, *why, **_values(ctx, item.payload))
        else:
            usable.append(item)
    calibrated = "calibration" in ctx and usable  # nothing to cut, nothing to calibrate
    calibration, refused = calibrate.for_cutting(ctx) if calibrated else (None, None)
    offset = calibration["cut_with"]["offset"] if calibration else 0

    def fail(item: Item, status: str, reason: str) -> Result:
        return failed(item.key, status, reason, **_values(ctx, item.payload, offset))

    if refused:
        return [early[item.key] if item.key in early else fail(item, *refused) for item in task.items]
    by_frame: dict[int, list[Item]] = {}
    for item in usable:
        by_frame.setdefault(item.payload["frame_id"] - 1 + offset, []).append(item)
    return cut_video(ctx["path"], task.items, by_frame, _cutter(ctx, encoding, calibration), fail, early)


def _cutter(context: dict[str, Any], encoding: Encoding, calibration: dict[str, Any] | None) -> Cut:
    """:func:`cut` with the calibrated scale, else the one :func:`fit` finds on the first decoded frame."""
    scale: tuple[float, float, str] | None = None
    geometry = None

    def cut_one(item: Item, frame: np.ndarray) -> Result:
        nonlocal scale, geometry
        if scale is None:
            chosen = calibration["cut_with"] if calibration else None
            try:
                scale = (
                    calibrated_scale(chosen) if chosen and chosen["scale"] else fit(context, *frame.shape[:2])
                )
            except Mismatch as e:
                raise Refused("resolution_mismatch", str(e)) from e
            geometry = calibrate.crop_geometry(calibration, scale[1]) if calibration else None
        return cut(item, frame, context, scale, encoding, geometry)

    return cut_one

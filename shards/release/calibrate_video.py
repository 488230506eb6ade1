"""Calibrate one video of ``build-shards --from-dets`` before cutting it (the scoring: :mod:`.calibrate`).

At plan time (:func:`plan_context`) a few released frames spread over the video are chosen, with
their boxes, and put in the task's context with the settings, so every worker (and a rerun that has
only some of the video's items left) calibrates on the same frames. In the worker
(:func:`calibrate`) exactly those frames and their neighbours at offsets -2..+2 are decoded with
the exact-seek reader, the person detector runs on them in one batch (frames resized to ``height``
for it: HOG finds only people at least 128 px tall; boxes mapped back), every geometry is scored
and one chosen.

Each result is kept in ``<root>/calibration/<bucket>/<video_id>.json`` (:func:`cache_path`) with
a key of its inputs (the settings, the frames and boxes, the video's size and mtime) and a digest
of the key and the result: a rerun reuses it, so a resumed build cuts with the geometry the first
run chose even with a detector that is not bit-exact (YOLO on a GPU), and ``dets_report.json``
reads it. A file that is damaged, edited by hand, or not a decision calibration could have made is
measured again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import fanout
from common.atomic import write_json
from common.detectors.build import build_detector
from common.media.frames import read_frames
from shards.release import calibrate as scoring

log = logging.getLogger(__name__)
CACHE = "calibration"  # the folder under the root
CACHE_LIMIT = 1 << 20  # bytes: a stored result is a few KB
_DETECTORS: dict[tuple[str, str, str], Any] = {}  # one detector per process (YOLO loads once)


@dataclass(frozen=True)
class Calibration:
    """What calibration runs with (``ShardSettings``' ``calibrate_*`` and ``cut_unverified``)."""

    detector: str = "hog"
    weights: str = "yolov5xu.pt"
    device: str = "auto"
    frames: int = 4
    height: int = 720
    min_agreement: float = 0.4
    min_margin: float = 0.1
    rescale: bool = True
    cut_unverified: bool = False


def from_settings(cfg: Any) -> Calibration | None:
    """The calibration of a ``ShardSettings`` (``None`` for ``--calibrate none``)."""
    if cfg.calibrate == "none":
        return None
    return Calibration(
        cfg.calibrate_detector,
        cfg.calibrate_weights,
        cfg.calibrate_device,
        cfg.calibrate_frames,
        cfg.calibrate_height,
        cfg.calibrate_min_agreement,
        cfg.calibrate_min_margin,
        cfg.calibrate_rescale,
        cfg.cut_unverified,
    )


def pick_frames(boxes: dict[int, list[list[float]]], n: int) -> list[int]:
    """``n`` released frame ids spread evenly over the video (ids >= 3: offset -2 must exist)."""
    ids = sorted(f for f in boxes if f >= 3)
    if len(ids) <= n:
        return ids
    return sorted({ids[int(round(i))] for i in np.linspace(0, len(ids) - 1, n)})


def plan_context(calibration: Calibration, boxes: list[Any], root: Path) -> dict[str, Any]:
    """The context entry ``calibration`` of one video: settings, chosen frames and their boxes."""
    by_frame: dict[int, list[list[float]]] = {}
    for b in boxes:
        usable = b.bbox is not None and all(np.isfinite(b.bbox))
        if usable and b.bbox[2] > b.bbox[0] and b.bbox[3] > b.bbox[1]:
            by_frame.setdefault(b.frame_id, []).append(list(b.bbox))
    chosen = pick_frames(by_frame, calibration.frames)
    return {**asdict(calibration), "boxes": [[f, by_frame[f]] for f in chosen], "cache": str(root / CACHE)}


def check_detector(calibration: Calibration) -> None:
    """Build the detector once before planning: missing YOLO weights stop the build, not each video."""
    _detector(asdict(calibration))


def _detector(cal: dict[str, Any]) -> Any:
    key = (cal["detector"], cal["weights"], cal["device"])
    if key not in _DETECTORS:
        _DETECTORS[key] = build_detector(cal["detector"], cal["weights"], cal["device"])
    return _DETECTORS[key]


def detect(cal: dict[str, Any], frames: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Detections of every frame, one batch, in source pixels (frames resized to ``height`` for it)."""
    import cv2

    order = sorted(frames)
    batch, factors = [], []
    for i in order:
        frame = frames[i]
        f = cal["height"] / frame.shape[0] if cal["height"] else 1.0
        size = (round(frame.shape[1] * f), round(frame.shape[0] * f))
        batch.append(
            frame
            if f == 1.0
            else cv2.resize(frame, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        )
        factors.append(np.array([size[0] / frame.shape[1], size[1] / frame.shape[0]] * 2))
    found = _detector(cal)(batch) if batch else []
    return {i: d[:, :4] / s for i, d, s in zip(order, found, factors, strict=True)}


def video_file(context: dict[str, Any]) -> list[int]:
    """``[size, mtime_ns]`` of the video file: which file a calibration measured."""
    stat = Path(context["path"]).stat()
    return [stat.st_size, stat.st_mtime_ns]


def cache_key(context: dict[str, Any], file: list[int] | None = None) -> str:
    """sha256 of the calibration inputs: settings, frames, boxes, stated size and the video file
    (``file``: its ``video_file``, read from the file when None)."""
    cal = {k: v for k, v in context["calibration"].items() if k not in ("cache", "cut_unverified")}
    inputs = [cal, context["size"], *(file or video_file(context))]
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def digest(key: str, result: Any) -> str:
    """sha256 of the key and the result as canonical JSON (``ValueError`` on NaN or infinity).

    Anyone can recompute it: it catches a damaged or hand-edited file, not a forger who writes
    one with a new digest (who could edit the detections or the video as easily).
    """
    return hashlib.sha256(json.dumps([key, result], sort_keys=True, allow_nan=False).encode()).hexdigest()


def cache_file(folder: Path, video_id: str) -> Path:
    """``<folder>/<bucket>/<video_id>.json``: one file per downloaded video (46,260 at LUPerson's
    size), fanned out (:mod:`common.fanout`) to a few hundred a folder."""
    return fanout.fanned_path(Path(folder), video_id, f"{video_id}.json")


def cache_path(context: dict[str, Any]) -> Path:
    """``<root>/calibration/<bucket>/<video_id>.json`` of the video of ``context``."""
    return cache_file(context["calibration"]["cache"], context["video_id"])


def cached(context: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result of this video's calibration when its inputs have not changed and the file
    is whole: its digest matches and it holds a decision calibration could have made (else
    ``None``: measure again). A file larger than :data:`CACHE_LIMIT` is not read."""
    try:
        with open(cache_path(context), "rb") as f:
            data = f.read(CACHE_LIMIT + 1)
        stored = json.loads(data)
        key, result = stored["key"], stored["result"]
        if (
            len(data) > CACHE_LIMIT
            or key != stored_key(context, stored)
            or stored["digest"] != digest(key, result)
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # ValueError: not JSON, or NaN; KeyError, TypeError: not the dict calibrate stores
    cal = context["calibration"]
    if not scoring.is_decision(result, context["size"], cal["rescale"]):
        return None
    return result if result.get("detector") == cal["detector"] else None


def stored_key(context: dict[str, Any], stored: dict[str, Any]) -> str:
    """The key the inputs give now. A video the streaming build deleted once cut is known by the
    file its calibration recorded (``stored["file"]``): the other inputs must still match."""
    try:
        return cache_key(context)
    except FileNotFoundError:
        if context.get("path") is None or "file" not in stored:
            raise
        return cache_key(context, [int(v) for v in stored["file"]])


def measure(context: dict[str, Any]) -> dict[str, Any]:
    """Decode, detect, score and decide (no cache); the result :func:`calibrate` stores."""
    cal = context["calibration"]
    boxes = {int(f): np.array(b, dtype=np.float64) for f, b in cal["boxes"]}
    wanted = {f - 1 + o for f in boxes for o in scoring.OFFSETS}
    frames = dict(read_frames(context["path"], sorted(wanted)))
    base: dict[str, Any] = {"detector": cal["detector"], "frames": [], "frame_size": None, "scores": []}
    if not boxes:
        return base | {"outcome": "unverified", "why": "no released frame with boxes at frame id >= 3"}
    if not frames:
        return base | {"outcome": "unverified", "why": "no calibration frame could be decoded"}
    height, width = next(iter(frames.values())).shape[:2]
    scales = scoring.scale_candidates((width, height), context["size"])
    allowed = scoring.allowed_scales(scales, (width, height), context["size"], cal["rescale"])
    dets = detect(cal, frames)
    per_frame = scoring.frame_table(boxes, dets, scales, (width, height), context["extent"])
    table = scoring.score_table(boxes, dets, scales, (width, height), frames=per_frame)
    used = scoring.scored_frames(boxes, dets)
    n_boxes = sum(len(boxes[f]) for f in used)
    decision = scoring.decide(table, allowed, cal["min_agreement"], cal["min_margin"], n_boxes, per_frame)
    base |= {"frames": used, "frame_size": [width, height], "allowed_scales": allowed, "boxes": n_boxes}
    base["scores"] = [[s, o, v] for (s, o), v in sorted(table.items(), key=lambda kv: (-kv[0][0], kv[0][1]))]
    return base | decision


def calibrate(context: dict[str, Any]) -> dict[str, Any]:
    """This video's calibration result (stored, or measured and stored), with ``cut_with``."""
    result = cached(context)
    if result is None:
        result = measure(context)
        file = video_file(context)
        key = cache_key(context, file)
        stored = {"key": key, "vname": context["vname"], "file": file, "result": result}
        stored["digest"] = digest(key, result)
        cache_path(context).parent.mkdir(parents=True, exist_ok=True)
        write_json(cache_path(context), stored)
    return result | {"cut_with": cut_with(context, result)}


def for_cutting(context: dict[str, Any]) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """``(result, None)`` to cut the video with ``result["cut_with"]``, or ``(None, (status, reason))``
    to cut nothing from it (not verified, or unreadable: ``video_unreadable``)."""
    try:
        result = calibrate(context)
    except OSError as e:
        return None, ("video_unreadable", f"{type(e).__name__}: {e}")
    if result["cut_with"] is None:
        return None, (result["outcome"], summary(result))
    return result, None


def cut_with(context: dict[str, Any], result: dict[str, Any]) -> dict[str, Any] | None:
    """``{"scale", "offset"}`` the video is cut with, or ``None``: not verified and not asked to cut.

    A video calibration did not verify is cut (``cut_unverified``) as without calibration: at the
    stated size, else unscaled, at the released frames.
    """
    if result["outcome"] == "verified":
        return {"scale": result["scale"], "offset": result["offset"]}
    if not context["calibration"]["cut_unverified"]:
        return None
    return {"scale": None, "offset": 0}  # None: the stated size (or none) decides, as without calibration


def summary(result: dict[str, Any]) -> str:
    """One line for the records of a video not cut: the outcome, why, the winner and the runner-up."""
    line = f"calibration {result['outcome']}: {result['why']}"
    if result.get("scale") is not None:
        runner = result["runner_up"]
        line += f" (best scale {result['scale']:g} offset {result['offset']:+d} agreement {result['agreement']:.3f}"
        if runner["scale"] is not None:
            line += f"; runner-up scale {runner['scale']:g} agreement {runner['agreement']:.3f}"
        line += ")"
    return line


def crop_geometry(result: dict[str, Any], scale: float) -> dict[str, Any]:
    """What a crop's JSON records under ``geometry``: how its video was calibrated and cut."""
    return {
        "calibration": result["outcome"],
        "detector": result["detector"],
        "agreement": result.get("agreement"),
        "scale": round(scale, 6),
        "offset": result["cut_with"]["offset"],
    }

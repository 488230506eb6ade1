"""Score the geometries a re-downloaded video may have against the released boxes, and pick one.

A geometry is ``(scale, offset)``: the released boxes times ``scale`` (the same for x and y) are
the boxes in the downloaded frames, and the released frame id ``f`` is the decoded frame
``f - 1 + offset``. The scales (:func:`scale_candidates`) map every frame size the release may
have been cut at onto the downloaded frame: YouTube's renditions fit a 16:9 box of its ladder, so
the short side is one of :data:`HEIGHTS` or the long side one of :data:`WIDTHS` (a 1280x536
"720p" film); and a stated size. The offsets are ``-2..+2``.

Agreement of a geometry: over the released boxes of the calibration frames, the mean of each box's
best IoU with a detection on the decoded frame (0 when there is none). A scale whose boxes reach
beyond the frame is not scored (``None``).

Decision (:func:`decide`): the winning scale is the one with the best agreement (over its offsets);
the runner-up is the best other scale. Within the winning scale the offset is 0 unless another
offset beats it by ``min_margin``, and does so on most of the scored frames, each by
``min_margin`` (:func:`shift_votes`): a still scene cannot tell frames apart, and one frame's
detector noise is not a shift -- no evidence, no shift.
The outcome is ``verified`` when at least :data:`MIN_BOXES` boxes were scored, the winner reaches
``min_agreement``, leads the runner-up by ``min_margin`` and is allowed (rescaling permitted, or
the scale of the stated size); ``mismatch`` when such a clear winner is not allowed; else
``unverified``.

**One video** (``build-shards --from-dets``, before it is cut). At plan time (:func:`plan_context`) a few released frames spread over the video are chosen, with
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
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from common import fanout
from common.atomic import write_json
from common.detectors.build import build_detector
from common.media.frames import read_frames
from shards.settings import Calibration

log = logging.getLogger(__name__)
CACHE = "calibration"  # the folder under the root
CACHE_LIMIT = 1 << 20  # bytes: a stored result is a few KB
_DETECTORS: dict[tuple[str, str, str], Any] = {}  # one detector per process (YOLO loads once)
HEIGHTS = (144, 240, 360, 480, 720, 1080, 1440, 2160)  # YouTube's ladder: the short side of 16:9
WIDTHS = (256, 426, 640, 854, 1280, 1920, 2560, 3840)  # and the long side (426, 854: rounded)
LADDER_ASPECT = 16 / 9  # a frame wider than this has its long side on the ladder
TWINS = 0.01  # scales closer than this (relative) are one candidate
OFFSETS = (-2, -1, 0, 1, 2)
OUTCOMES = ("verified", "unverified", "mismatch")
MAX_SIDE = 1 << 16  # pixels: no video frame is larger
DIGITS = 4  # agreements are reported to this many decimals
MIN_BOXES = 3  # fewer released boxes on the calibration frames prove nothing: unverified


def stated_scales(size: Sequence[int], stated: Sequence[int] | None) -> list[float]:
    """The scales a stated ``(width, height)`` gives the ``size`` frame: by height, then by width."""
    if not stated:
        return []
    return [round(size[1] / stated[1], 6), round(size[0] / stated[0], 6)]


def scale_candidates(size: Sequence[int], stated: Sequence[int] | None = None) -> list[float]:
    """Scales mapping each frame size the release may have had onto the ``(width, height)`` frame.

    1 first, the stated size's, then the short side over :data:`HEIGHTS` and the long side over
    :data:`WIDTHS` (the long side's first for a frame wider than 16:9: there it is the exact one).
    Scales within :data:`TWINS` of an earlier one are dropped: 16:9 frames give such twins (640/426
    beside 360/240), and two candidates that close score alike, so neither could lead the other by
    the margin. Largest first.
    """
    short, long = sorted(size)
    by_short = [short / h for h in HEIGHTS]
    by_long = [long / w for w in WIDTHS]
    wide = long / short > LADDER_ASPECT * (1 + TWINS)
    kept: list[float] = []
    for scale in [1.0, *stated_scales(size, stated), *(by_long + by_short if wide else by_short + by_long)]:
        if all(not twins(scale, k) for k in kept):
            kept.append(round(scale, 6))
    return sorted(kept, reverse=True)


def twins(a: float, b: float) -> bool:
    """Whether two scales are one candidate (within :data:`TWINS` of each other)."""
    return abs(a / b - 1) <= TWINS


def allowed_scales(
    scales: Sequence[float], size: Sequence[int], stated: Sequence[int] | None, rescale: bool
) -> list[float]:
    """The candidates a video may be cut at: the stated size's, else any (``rescale``) or 1."""
    if stated:
        return [s for s in scales if any(twins(s, t) for t in stated_scales(size, stated))]
    return list(scales) if rescale else [1.0]


def best_iou(boxes: np.ndarray, dets: np.ndarray) -> np.ndarray:
    """Each box's best IoU with any of ``dets`` (``(N, 4)`` and ``(M, >=4)`` x1, y1, x2, y2)."""
    if len(boxes) == 0 or len(dets) == 0:
        return np.zeros(len(boxes))
    b, d = boxes[:, None, :4], dets[None, :, :4]
    w = np.clip(np.minimum(b[..., 2], d[..., 2]) - np.maximum(b[..., 0], d[..., 0]), 0, None)
    h = np.clip(np.minimum(b[..., 3], d[..., 3]) - np.maximum(b[..., 1], d[..., 1]), 0, None)
    inter = w * h
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    area_d = (d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])
    union = area_b + area_d - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou.max(axis=1)


def inside(boxes: np.ndarray, scale: float, width: int, height: int) -> bool:
    """Whether every box times ``scale``, rounded as it would be cut, lies in the frame."""
    a = np.round(boxes * scale)
    return bool((a[:, :2] >= 0).all() and (a[:, 2] <= width).all() and (a[:, 3] <= height).all())


def scored_frames(boxes: Mapping[int, np.ndarray], dets: Mapping[int, np.ndarray]) -> list[int]:
    """The released frame ids whose decoded frames exist at every offset (the only ones scored)."""
    return [f for f in sorted(boxes) if len(boxes[f]) and all(f - 1 + o in dets for o in OFFSETS)]


def frame_table(
    boxes: Mapping[int, np.ndarray],
    dets: Mapping[int, np.ndarray],
    scales: Sequence[float],
    size: tuple[int, int],
    extent: Sequence[float] | None = None,
) -> dict[tuple[float, int], list[float] | None]:
    """``(scale, offset) ->`` each scored frame's mean best IoU (``None``: boxes outside the frame).

    ``boxes`` maps a released frame id to its ``(N, 4)`` boxes; ``dets`` a decoded 0-based frame
    index to its detections; ``extent`` bounds every box of the video (default: these boxes).
    """
    frames = scored_frames(boxes, dets)
    scored = np.concatenate([boxes[f] for f in frames]) if frames else np.zeros((0, 4))
    bounds = np.array([extent]) if extent else scored
    table: dict[tuple[float, int], list[float] | None] = {}
    for scale in scales:
        fits = len(scored) > 0 and inside(bounds, scale, *size)
        for offset in OFFSETS:
            table[scale, offset] = (
                [float(best_iou(boxes[f] * scale, dets[f - 1 + offset]).mean()) for f in frames]
                if fits
                else None
            )
    return table


def score_table(
    boxes: Mapping[int, np.ndarray],
    dets: Mapping[int, np.ndarray],
    scales: Sequence[float],
    size: tuple[int, int],
    extent: Sequence[float] | None = None,
    frames: Mapping[tuple[float, int], list[float] | None] | None = None,
) -> dict[tuple[float, int], float | None]:
    """``(scale, offset) -> agreement``, the mean best IoU over the boxes of the scored frames
    (``None``: boxes outside the frame); ``frames``: their :func:`frame_table`, when computed."""
    frames = frame_table(boxes, dets, scales, size, extent) if frames is None else frames
    weights = [len(boxes[f]) for f in scored_frames(boxes, dets)]
    return {
        k: None if v is None else round(float(np.average(v, weights=weights)), DIGITS)
        for k, v in frames.items()
    }


def shift_votes(
    frames: Mapping[tuple[float, int], list[float] | None], scale: float, offset: int, min_margin: float
) -> tuple[int, int]:
    """``(frames where offset beats offset 0 by min_margin, frames scored)`` at ``scale``."""
    shifted, plain = frames[scale, offset], frames[scale, 0]
    if shifted is None or plain is None:
        return 0, 0
    return sum(a - b >= min_margin for a, b in zip(shifted, plain, strict=True)), len(plain)


def _best(table: Mapping[tuple[float, int], float | None], keys) -> tuple[Any, float]:
    """The key of ``keys`` with the best agreement (first on ties), and that agreement (-1: none)."""
    scored = [(table[k], k) for k in keys if table[k] is not None]
    if not scored:
        return None, -1.0
    value = max(v for v, _ in scored)
    return next(k for v, k in scored if v == value), value


def _candidate(key: tuple[float, int] | None, value: float) -> dict[str, Any]:
    return {"scale": key[0] if key else None, "offset": key[1] if key else None, "agreement": max(value, 0.0)}


def decide(
    table: Mapping[tuple[float, int], float | None],
    allowed: Sequence[float],
    min_agreement: float,
    min_margin: float,
    boxes: int = MIN_BOXES,
    frames: Mapping[tuple[float, int], list[float] | None] | None = None,
) -> dict[str, Any]:
    """The outcome, the chosen geometry and the runner-ups of a :func:`score_table` (see the docstring);
    ``boxes``: how many released boxes were scored (fewer than :data:`MIN_BOXES`: ``unverified``);
    ``frames``: the :func:`frame_table`, whose frames must mostly agree on a shift."""
    scales = sorted({s for s, _ in table}, reverse=True)
    per_scale = {s: _best(table, [(s, o) for o in OFFSETS]) for s in scales}
    ranked = sorted(scales, key=lambda s: -per_scale[s][1])  # stable: the larger scale first on ties
    if per_scale[ranked[0]][1] < 0:
        return {"outcome": "unverified", "why": "no candidate scale keeps the boxes inside the frame"}
    winner, agreement = ranked[0], per_scale[ranked[0]][1]
    runner = per_scale[ranked[1]] if len(ranked) > 1 else (None, -1.0)
    offset = per_scale[winner][0][1]
    votes = shift_votes(frames, winner, offset, min_margin) if frames and offset else (0, 0)
    if offset and (agreement - table[winner, 0] < min_margin or (frames and 2 * votes[0] <= votes[1])):
        offset = 0  # no clear evidence of a shift
    result = {
        "scale": winner,
        "offset": offset,
        "agreement": table[winner, offset],
        "runner_up": _candidate(*runner),
        "offset_runner_up": _candidate(*_best(table, [(winner, o) for o in OFFSETS if o != offset])),
        "shift_votes": list(votes),
    }
    margin = round(agreement - max(runner[1], 0.0), DIGITS)
    if boxes < MIN_BOXES:
        return {"outcome": "unverified", "why": f"{boxes} boxes scored, fewer than {MIN_BOXES}", **result}
    if agreement < min_agreement:
        return {"outcome": "unverified", "why": f"agreement {agreement:.3f} < {min_agreement}", **result}
    if margin < min_margin:
        why = f"scale {winner:g} leads scale {result['runner_up']['scale']} by {margin:.3f} < {min_margin}"
        return {"outcome": "unverified", "why": why, **result}
    if not any(abs(winner - a) < 1e-6 for a in allowed):
        why = f"scale {winner:g} wins clearly but only {', '.join(f'{a:g}' for a in allowed)} is allowed"
        return {"outcome": "mismatch", "why": why, **result}
    return {"outcome": "verified", "why": "", **result}


def _number(value: Any, low: float, high: float) -> bool:
    """A JSON number (not a bool) in ``[low, high]``; NaN fails the comparison."""
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def is_decision(result: Any, stated: Sequence[int] | None, rescale: bool) -> bool:
    """Whether ``result`` (read back from a file) is a decision :func:`decide` could have made on its
    ``frame_size``: a known outcome, a candidate scale (an allowed one when verified), an offset of
    :data:`OFFSETS`, agreements in [0, 1]. What it cannot know: whether the scores were measured."""
    if not isinstance(result, dict) or result.get("outcome") not in OUTCOMES:
        return False
    if not isinstance(result.get("why"), str):
        return False
    if "scale" not in result:  # decided before any geometry was scored
        return result["outcome"] == "unverified"
    size = result.get("frame_size")
    if not (
        isinstance(size, list) and len(size) == 2 and all(type(v) is int and 0 < v <= MAX_SIDE for v in size)
    ):
        return False
    scales = scale_candidates(size, stated)
    if result["outcome"] == "verified":
        scales = allowed_scales(scales, size, stated, rescale)
    runners = [result.get("runner_up"), result.get("offset_runner_up")]
    return (
        _number(result["scale"], 0, math.inf)
        and result["scale"] in scales
        and type(result.get("offset")) is int
        and result["offset"] in OFFSETS
        and _number(result.get("agreement"), 0, 1)
        and all(isinstance(r, dict) and _number(r.get("agreement"), 0, 1) for r in runners)
        and all(r.get("scale") is None or _number(r["scale"], 0, math.inf) for r in runners)
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
    if not is_decision(result, context["size"], cal["rescale"]):
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
    wanted = {f - 1 + o for f in boxes for o in OFFSETS}
    frames = dict(read_frames(context["path"], sorted(wanted)))
    base: dict[str, Any] = {"detector": cal["detector"], "frames": [], "frame_size": None, "scores": []}
    if not boxes:
        return base | {"outcome": "unverified", "why": "no released frame with boxes at frame id >= 3"}
    if not frames:
        return base | {"outcome": "unverified", "why": "no calibration frame could be decoded"}
    height, width = next(iter(frames.values())).shape[:2]
    scales = scale_candidates((width, height), context["size"])
    allowed = allowed_scales(scales, (width, height), context["size"], cal["rescale"])
    dets = detect(cal, frames)
    per_frame = frame_table(boxes, dets, scales, (width, height), context["extent"])
    table = score_table(boxes, dets, scales, (width, height), frames=per_frame)
    used = scored_frames(boxes, dets)
    n_boxes = sum(len(boxes[f]) for f in used)
    decision = decide(table, allowed, cal["min_agreement"], cal["min_margin"], n_boxes, per_frame)
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

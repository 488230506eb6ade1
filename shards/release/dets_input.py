"""Read the released LUPerson detections: a bundled ``dets.pkl`` or a folder of per-video pickles.

Release format (DengpanFu/LUPerson, ``LUP/extract.py``): per video, named by its ``vnames.txt``
line ``<country>+<city>+<youtube_id>``, a dict ``{frame_id: [(obj_idx, {"bbox": array([x1, y1,
x2, y2]), ...}), ...]}`` with ``frame_id`` 1-based (the release seeks to ``frame_id - 1``).
``dets.pkl`` bundles them in one dict keyed by that line. The release does not record the size
of the frames the boxes were found on; a per-video entry ``"size": (width, height)`` (or
``"width"`` and ``"height"``) states it, and is the one string key read here.

:mod:`shards.release.import_dets` parses the names with :func:`common.release.vnames.parse_vname`,
crawl ``--from-vnames``'s parser: a name crawl would not list is ``bad_vname``, never ``not_listed``.
Pickles are loaded with :mod:`shards.release.safe_pickle` (builtins and numpy arrays only, sizes
checked against the file, at most ``safe_pickle.MAX_DEPTH`` deep, no container inside itself).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.errors import UsageError, one_line, require_path
from shards.release import safe_pickle

log = logging.getLogger(__name__)
SIZE_KEYS = ("size", "width", "height")


@dataclass
class VideoDets:
    """One video's detections as named in the release (``vname``), or why they cannot be read."""

    vname: str
    origin: str  # the file (and key) they came from
    dets: Any = None
    error: str = ""


@dataclass
class Box:
    """One released box: 1-based frame, object index, ``[x1, y1, x2, y2]`` (``None`` if unusable)."""

    frame_id: int
    obj_idx: int
    bbox: list[float] | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedDets:
    boxes: list[Box]
    size: tuple[int, int] | None  # (width, height) the boxes were found at, when stated
    malformed: list[str]  # entries that name no frame/object, with why
    duplicates: int
    ignored_keys: list[str]


def _name(key: Any) -> str:
    name = key.decode() if isinstance(key, bytes) else str(key)
    for suffix in (".mp4", ".pkl"):
        name = name.removesuffix(suffix)
    return name


def load(path: str) -> list[VideoDets]:
    """Every video of a bundled pickle or of a folder of ``*.pkl`` (searched recursively), sorted."""
    p = require_path(path, "--from-dets")
    if p.is_dir():
        files = sorted(p.rglob("*.pkl"))
        if not files:
            raise UsageError(f"--from-dets: no *.pkl file in {p}")
        videos = []
        for f in files:
            try:
                videos.append(VideoDets(_name(f.name), str(f), safe_pickle.load(f)))
            except (OSError, *safe_pickle.LOAD_ERRORS) as e:
                error = f"cannot load {f.name}: {one_line(str(e), 200)}"
                videos.append(VideoDets(_name(f.name), str(f), error=error))
        return videos
    try:
        bundle = safe_pickle.load(p)
    except (OSError, *safe_pickle.LOAD_ERRORS) as e:
        raise UsageError(
            f"--from-dets: {p} cannot be loaded as a detections pickle ({one_line(str(e), 200)})"
        ) from None
    if not isinstance(bundle, dict) or not bundle:
        raise UsageError(f"--from-dets: {p} must hold a non-empty dict keyed by <country>+<city>+<id>")
    return sorted((VideoDets(_name(k), f"{p}[{k!r}]", v) for k, v in bundle.items()), key=lambda v: v.vname)


def plain(value: Any) -> Any:
    """JSON-able copy of a detection field: arrays -> lists, numpy scalars -> Python, NaN/inf -> None."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)


def _size(dets: dict) -> tuple[int, int] | None:
    """The stated ``(width, height)``; ``ValueError`` when stated but unusable."""
    if "size" in dets:
        raw = dets["size"]
    elif "width" in dets or "height" in dets:
        raw = (dets.get("width"), dets.get("height"))
    else:
        return None
    try:
        values = np.asarray(raw, dtype=np.float64).ravel().tolist()
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(math.isfinite(v) and v >= 1 and v.is_integer() for v in values):
        raise ValueError(f"size entry {plain(raw)!r} is not (width, height) in whole pixels")
    return int(values[0]), int(values[1])


def _bbox(det: dict) -> list[float] | None:
    try:
        values = np.asarray(det["bbox"], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        return None
    return [float(v) for v in values[:4]] if values.size >= 4 else None


def parse(dets: Any) -> ParsedDets:
    """The boxes of one video's detections; ``ValueError`` when it is not the release's dict."""
    if not isinstance(dets, dict):
        raise ValueError(
            f"expected a dict {{frame_id: [(obj_idx, {{'bbox': ...}}), ...]}}, got {type(dets).__name__}"
        )
    size = _size(dets)
    boxes: dict[tuple[int, int], Box] = {}
    malformed, ignored, duplicates = [], [], 0
    for key, entries in dets.items():
        if isinstance(key, str):
            if key not in SIZE_KEYS:
                ignored.append(key)
            continue
        frame_id = _int(key)
        if frame_id is None or not isinstance(entries, list | tuple):
            malformed.append(f"frame key {plain(key)!r}: expected an integer frame_id -> list of boxes")
            continue
        for entry in entries:
            ok = isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[1], dict)
            obj_idx = _int(entry[0]) if ok else None
            if obj_idx is None:
                malformed.append(
                    f"frame {frame_id}: entry {str(plain(entry))[:80]} is not (obj_idx, {{'bbox': ...}})"
                )
                continue
            if (frame_id, obj_idx) in boxes:
                duplicates += 1
                continue
            extra = {str(k): plain(v) for k, v in entry[1].items() if k != "bbox"}
            boxes[frame_id, obj_idx] = Box(frame_id, obj_idx, _bbox(entry[1]), extra)
    ordered = [boxes[k] for k in sorted(boxes)]
    return ParsedDets(ordered, size, malformed, duplicates, ignored)

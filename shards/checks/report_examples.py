"""Example images of ``report.html``: per detection status, a seeded choice of boxes drawn on their
frames; and crops whose faces were blurred, as the shards hold them.

Each example is a crop of the sampled frame around the box (``CONTEXT`` of the box's size on every
side), scaled to ``HEIGHT`` pixels high, with the box outline (green when kept, red when dropped)
and the 17 COCO keypoints when the box has them: confidence above the threshold in cyan, at or
below it in magenta. The threshold is the one detect applied: a ``keypoint_threshold`` in the
per-box file's metadata when detect recorded one, else the default of its ``keypoint_model``
(``thresholds``: blazepose 0.8, hrnet 0.3, detect's defaults). Frames are read with
``common.media.frames.read_frames``, the reader detect sampled them with.

When the build blurred faces (``--blur-faces``), every example is blurred too before it is
written (the build's own ``Encoding``: BlazeFace on the example, the box's head keypoints): the
page never shows a face the shards do not. The face examples are crops with a face blurred, read
from their shard, the blurred regions outlined (``FACE_REGION``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path
from common.manifests import boxes, takedowns, video_filter
from common.manifests.samples import sample_key
from common.media.frames import read_frames
from common.settings import build_settings, read_yaml_section
from shards.checks.box_tally import BoxTally, pick
from shards.settings import ShardSettings
from shards.write.faces import Encoding

CONTEXT = 0.3  # context around the box, as a fraction of its width / height, on each side
HEIGHT = 200  # pixels: every example image is this high ...
MAX_WIDTH = 320  # ... and at most this wide
# BGR colours; the page's legend shows the same ones.
KEPT_BOX = (0, 200, 0)
DROPPED_BOX = (0, 0, 255)
KEYPOINT_ABOVE = (255, 255, 0)
KEYPOINT_BELOW = (255, 0, 255)
FACE_REGION = (0, 220, 255)
# detect's defaults (detect/settings.py): blazepose_keypoint_threshold, keypoint_threshold (HRNet)
THRESHOLDS = {"blazepose": 0.8, "hrnet": 0.3}
COLUMNS = ["video_id", "frame", "box", "x1", "y1", "x2", "y2", "score", "status", "keypoint_model"]
REQUIRED = ("frame", "x1", "y1", "x2", "y2", "status")
FOLDER = "report_files"


def keypoint_threshold(model: str, recorded: str | None, thresholds: dict[str, float]) -> float:
    """The threshold a box's keypoints were judged with: ``recorded`` (the file's metadata) when
    present, else the default of the model family (``hrnet_w32`` -> ``hrnet``; unknown: hrnet's)."""
    if recorded:
        return float(recorded)
    family = next((k for k in thresholds if str(model).startswith(k)), "hrnet")
    return thresholds[family]


def chosen_boxes(tally: BoxTally, per_status: int, seed: int):
    """The example boxes (:func:`box_tally.pick`) read from their files, without keypoints:
    ``COLUMNS`` plus ``file`` and ``row`` (the box's position in its file), in ``pick``'s order."""
    import pandas as pd

    picks = pick(tally.counts, per_status, seed)
    found = {}
    for index in sorted({f for _, f, _ in picks}):
        path = tally.files[index]
        table = boxes.read(path, COLUMNS, required=REQUIRED).reindex(columns=COLUMNS)
        table["video_id"] = table["video_id"].fillna(path.stem).astype(str)
        table["keypoint_model"] = table["keypoint_model"].fillna("").astype(str)
        table = table.assign(file=str(path), row=np.arange(len(table)))
        status = table["status"].to_numpy()
        for s, _, n in (p for p in picks if p[1] == index):
            found[(s, index, n)] = table.iloc[np.flatnonzero(status == s)[n]]
    if not picks:
        return pd.DataFrame(columns=[*COLUMNS, "file", "row"])
    return pd.DataFrame([found[p] for p in picks]).reset_index(drop=True)


def blurring(root: Path, faces: dict[str, Any] | None) -> Encoding | None:
    """The build's face blurring, from its saved settings (``settings/shards.yaml``, which stream
    writes too), when ``faces`` (stats.json's) says crops were checked; None otherwise."""
    if not faces:
        return None
    path = Path(root) / "settings" / "shards.yaml"
    saved = read_yaml_section(path, "shards") if path.is_file() else {}
    known = {f.name for f in dataclasses.fields(ShardSettings)}
    cfg = build_settings(ShardSettings, {k: v for k, v in saved.items() if k in known}, str(path))
    return dataclasses.replace(cfg, blur_faces=True).encoding()


def draw(
    frame: np.ndarray, box, keypoints, threshold: float, kept: bool, blur: Encoding | None = None
) -> tuple[np.ndarray, list[int]]:
    """The example image of one box and where its outline lies in it ([x1, y1, x2, y2] pixels);
    ``blur``: the faces in it blurred first."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = CONTEXT * (x2 - x1), CONTEXT * (y2 - y1)
    fh, fw = frame.shape[:2]
    cx1, cy1 = int(max(0, np.floor(x1 - dx))), int(max(0, np.floor(y1 - dy)))
    cx2, cy2 = int(min(fw, np.ceil(x2 + dx))), int(min(fh, np.ceil(y2 + dy)))
    if cx2 - cx1 < 2 or cy2 - cy1 < 2:
        raise ValueError(f"box {x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f} lies outside the {fw}x{fh} frame")
    scale = min(HEIGHT / (cy2 - cy1), MAX_WIDTH / (cx2 - cx1))
    size = (max(1, round((cx2 - cx1) * scale)), max(1, round((cy2 - cy1) * scale)))
    region = frame[cy1:cy2, cx1:cx2]
    if blur is not None:
        flat = None if keypoints is None else np.asarray(keypoints, np.float64).ravel().tolist()
        region = blur.blur(region, flat, (cx1, cy1))[0]
    image = cv2.resize(region, size, interpolation=cv2.INTER_AREA)

    def at(x: float, y: float) -> tuple[int, int]:
        return round((x - cx1) * scale), round((y - cy1) * scale)

    outline = [*at(x1, y1), *at(x2, y2)]
    cv2.rectangle(image, tuple(outline[:2]), tuple(outline[2:]), KEPT_BOX if kept else DROPPED_BOX, 2)
    points = np.asarray(keypoints if keypoints is not None else [], dtype=np.float64).reshape(-1, 3)
    for x, y, conf in points:
        colour = KEYPOINT_ABOVE if conf > threshold else KEYPOINT_BELOW
        cv2.circle(image, at(x, y), 3, colour, -1, lineType=cv2.LINE_AA)
    return image, outline


def video_paths(root: Path) -> dict[str, Path]:
    """video_id -> the video file, from ``video_filter.parquet`` (empty when there is none)."""
    if not (Path(root) / video_filter.FILE).is_file():
        return {}
    table = video_filter.read(root, ("video_id", "path"))
    return {str(v): Path(root) / str(p) for v, p in zip(table["video_id"], table["path"], strict=True)}


def _keypoints_and_threshold(file: str, thresholds: dict[str, float]) -> tuple[list, list[float]]:
    """The keypoints column of one box file (``None`` per row when absent) and each row's threshold."""
    table = boxes.read(Path(file), ["status", "keypoints", "keypoint_model"], required=("status",))
    recorded = boxes.metadata(Path(file)).get("keypoint_threshold")
    models = table["keypoint_model"].fillna("") if "keypoint_model" in table else [""] * len(table)
    limits = [keypoint_threshold(str(m), recorded, thresholds) for m in models]
    points = list(table["keypoints"]) if "keypoints" in table else [None] * len(table)
    return points, limits


def draw_video(
    path: Path, rows, thresholds: dict[str, float], blur: Encoding | None = None
) -> dict[Any, tuple[np.ndarray, list[int], float]]:
    """Every chosen box of one video drawn, frame by frame as decoded: {row label: (image, outline,
    threshold)}; a box off its frame is left out."""
    per_file = {f: _keypoints_and_threshold(f, thresholds) for f in sorted(set(rows["file"]))}
    drawn = {}
    for index, frame in read_frames(path, sorted(set(rows["frame"].astype(int)))):
        for label, r in rows[rows["frame"] == index].iterrows():
            points, limits = per_file[r["file"]]
            kps = points[int(r["row"])]
            kps = None if kps is None or len(kps) == 0 else kps
            limit = limits[int(r["row"])]
            try:
                image, outline = draw(
                    frame, (r["x1"], r["y1"], r["x2"], r["y2"]), kps, limit, r["status"] == "ok", blur
                )
            except ValueError:
                continue
            drawn[label] = (image, outline, limit)
    return drawn


def draw_all(
    root: Path, chosen, thresholds: dict[str, float], blur: Encoding | None = None
) -> tuple[dict, list[str]]:
    """Every chosen box drawn ({row label: (image, outline, threshold)}) and notes on those that
    could not be (a video not in ``video_filter.parquet`` or unreadable, a frame not decoded)."""
    paths, notes, drawn = video_paths(root), [], {}
    removed = takedowns.taken_down(root)
    if removed:  # a takedown's crops are shown nowhere, their boxes on the frames included
        gone = [
            removed.reason(sample_key(str(r.video_id), int(r.frame), int(r.box)), str(r.video_id)) is not None
            if r.box == r.box  # NaN: a box file without box numbers; its video may still be named
            else removed.reason("", str(r.video_id)) is not None
            for r in chosen.itertuples()
        ]
        if any(gone):
            notes.append(f"{sum(gone)} example(s) not shown: taken down ({takedowns.LOG})")
            chosen = chosen[[not g for g in gone]]
    for vid, rows in chosen.groupby("video_id", sort=True):
        if vid not in paths:
            notes.append(f"{len(rows)} example(s) of video {vid}: not in {video_filter.FILE}")
            continue
        try:
            now = draw_video(paths[vid], rows, thresholds, blur)
        except OSError as e:
            notes.append(f"{len(rows)} example(s) of video {vid}: cannot read {paths[vid]} ({e})")
            continue
        if len(now) < len(rows):
            notes.append(f"{len(rows) - len(now)} example(s) of video {vid}: frame not decoded or box off it")
        drawn |= now
    return drawn, notes


def write_examples(
    root: Path, chosen, thresholds: dict[str, float], blur: Encoding | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Draw and write the chosen boxes to ``<root>/report_files/`` (removing the previous run's
    examples there); return the examples for the page, in ``chosen``'s order, and the notes."""
    import cv2

    drawn, notes = draw_all(Path(root), chosen, thresholds, blur)
    out, examples = Path(root) / FOLDER, []
    out.mkdir(parents=True, exist_ok=True)
    for n, (label, r) in enumerate(chosen.iterrows()):
        if label not in drawn:
            continue
        image, outline, limit = drawn[label]
        name = f"{r['status']}_{n:03d}.jpg"
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data.tobytes())
        examples.append(
            {k: r[k] for k in ("video_id", "frame", "score", "status")}
            | {"src": f"{FOLDER}/{name}", "outline": outline, "threshold": limit}
            | {"size": (round(r["x2"] - r["x1"]), round(r["y2"] - r["y1"]))}
        )
    return examples, notes


def write_face_examples(root: Path, samples, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` crops with a face blurred (a seeded choice among samples.parquet's ``faces > 0``),
    read from their shards and written to ``report_files/faces_<i>.jpg`` with the blurred regions
    outlined: ``[{"src", "key", "regions"}]``."""
    import json
    import tarfile

    import cv2

    blurred = samples.loc[(samples["status"] == "ok") & (samples["faces"] > 0), ["key", "shard"]]
    chosen = blurred.sample(min(n, len(blurred)), random_state=seed).sort_values("key")
    found: dict[str, dict[str, bytes]] = {}
    for shard, keys in chosen.groupby("shard")["key"]:
        wanted = set(keys)
        with tarfile.open(Path(root) / "shards" / str(shard)) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if key in wanted and ext in ("jpg", "json"):
                    found.setdefault(key, {})[ext] = tar.extractfile(member).read()
    out, examples = Path(root) / FOLDER, []
    for i, key in enumerate(chosen["key"]):
        files = found.get(key, {})
        if set(files) != {"jpg", "json"}:
            continue
        image = cv2.imdecode(np.frombuffer(files["jpg"], np.uint8), cv2.IMREAD_COLOR)
        regions = json.loads(files["json"]).get("faces", {}).get("regions", [])
        scale = HEIGHT / image.shape[0]
        image = cv2.resize(
            image, (max(1, round(image.shape[1] * scale)), HEIGHT), interpolation=cv2.INTER_AREA
        )
        for x1, y1, x2, y2 in regions:
            corners = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale) - 1, round(y2 * scale) - 1)
            cv2.rectangle(image, *corners, FACE_REGION, 1)
        name = f"faces_{i:03d}.jpg"
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        examples.append({"src": f"{FOLDER}/{name}", "key": key, "regions": regions})
    return examples


def remove_stale_images(root: Path, examples: list[dict[str, Any]]) -> None:
    """The ``*.jpg`` of ``report_files/`` a previous run wrote and this page does not show."""
    written = {Path(e["src"]).name for e in examples}
    for stale in (Path(root) / FOLDER).glob("*.jpg"):
        if stale.name not in written:
            stale.unlink()

"""Tracklets around a sampled frame: link its boxes over nearby frames with ByteTrack, pick crops.

``detect --tracks`` detects persons on the frames ``anchor - window .. anchor + window`` (every
``--track-step``-th) around each sampled frame (the *anchor*) and links the boxes with ultralytics'
ByteTrack (``ultralytics.trackers.byte_tracker.BYTETracker``, Zhang et al., ECCV 2022), fed with
our own detector's boxes. Two trackers start at the anchor, one running forward and one
backward in time; on their first frame every box scoring at least ``high`` opens a track, so each
track holds exactly one anchor box. A *tracklet* is such a track: the anchor box and the boxes
linked to it on the other frames. Each window is tracked on its own, so a tracklet never depends
on another window, on batching or on the engine.

:func:`pick_crops` then keeps up to ``max_crops`` crops per tracklet (the anchor box counts as
one), at least ``min_gap`` frames apart, farthest from the anchor first.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

# ByteTrack's score thresholds in the detector's units (high: opens a track and is matched first;
# low: lower boxes are ignored, those in between are matched second). YOLO: ultralytics'
# bytetrack.yaml. HOG: its SVM margin; whole persons and their large parts score 0.4-1.8 on the
# sample clips (docs/detect.md), background fragments mostly below 0.3.
SCORES = {"yolo": (0.25, 0.1), "hog": (0.3, 0.0)}


def tracker_args(detector: str) -> SimpleNamespace:
    """The ``BYTETracker`` settings for boxes of ``detector`` (``"yolo:..."`` or ``"hog"``)."""
    high, low = SCORES["hog" if detector.startswith("hog") else "yolo"]
    return SimpleNamespace(
        track_high_thresh=high,
        track_low_thresh=low,
        new_track_thresh=high,
        track_buffer=30,  # in tracker steps: longer than any window, so a lost box can come back
        match_thresh=0.8,
        fuse_score=not detector.startswith("hog"),  # an SVM margin is not a probability
    )


class Detections:
    """The results-like object ``BYTETracker.update`` takes: ``conf``, ``cls``, ``xyxy``, ``xywh``,
    boolean indexing and ``len``, over (N, 5) boxes ``x1, y1, x2, y2, score``."""

    def __init__(self, boxes: np.ndarray) -> None:
        self.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
        self.xyxy = self.boxes[:, :4]
        self.conf = self.boxes[:, 4]
        self.cls = np.zeros(len(self.boxes), dtype=np.float32)  # person
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        self.xywh = np.concatenate([self.xyxy[:, :2] + wh / 2, wh], axis=1)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> Detections:
        return Detections(self.boxes[index])


def follow(frames: list[np.ndarray], detector: str) -> dict[int, dict[int, int]]:
    """Run one ByteTrack over ``frames`` (per frame, its (N, 5) boxes; the anchor first):
    anchor box index -> {position in ``frames``: box index} of the boxes linked to it."""
    from ultralytics.trackers.byte_tracker import BYTETracker

    tracker = BYTETracker(tracker_args(detector))
    anchors: dict[int, int] = {}  # track id -> anchor box index
    linked: dict[int, dict[int, int]] = {}
    for position, boxes in enumerate(frames):
        out = tracker.update(Detections(boxes))
        for row in out.reshape(-1, 8):
            track, box = int(row[4]), int(row[7])
            if position == 0:
                anchors[track] = box
                linked[box] = {0: box}
            elif track in anchors:
                linked[anchors[track]][position] = box
    return linked


@dataclass(frozen=True)
class Window:
    """The tracked frames around one anchor: frame numbers in order and their boxes."""

    frames: list[int]
    boxes: list[np.ndarray]
    anchor: int


def link(window: Window, detector: str) -> dict[int, dict[int, int]]:
    """Anchor box index -> {frame: box index} over the whole window (the anchor included)."""
    at = window.frames.index(window.anchor)
    order = {"forward": list(range(at, len(window.frames))), "backward": list(range(at, -1, -1))}
    tracklets: dict[int, dict[int, int]] = {}
    for positions in order.values():
        linked = follow([window.boxes[p] for p in positions], detector)
        for anchor_box, members in linked.items():
            mine = tracklets.setdefault(anchor_box, {})
            mine.update({window.frames[positions[p]]: box for p, box in members.items()})
    return dict(sorted(tracklets.items()))


def pick_crops(anchor: int, candidates: list[int], max_crops: int, min_gap: int) -> list[int]:
    """Frames (sorted) of up to ``max_crops - 1`` crops besides the anchor's, chosen from
    ``candidates`` (frames whose box passed every rule) farthest from the anchor first, each at
    least ``min_gap`` frames from the anchor and from every crop already chosen."""
    chosen = [anchor]
    for frame in sorted(candidates, key=lambda f: (-abs(f - anchor), f)):
        if len(chosen) >= max_crops:
            break
        if all(abs(frame - other) >= min_gap for other in chosen):
            chosen.append(frame)
    return sorted(chosen[1:])

"""Rows of ``detections/<video_id>.parquet`` (schema: ``common.manifests.boxes``), built frame by frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from common.manifests import boxes as box_file
from detect.person_rules import PersonRules, person_reason


class BoxRows:
    """The rows of one video, accumulated frame by frame."""

    def __init__(self, detector: str, keypoint_model: str) -> None:
        self.detector, self.keypoint_model = detector, keypoint_model
        self.columns: dict[str, list] = {name: [] for name in box_file.schema().names}

    def __len__(self) -> int:
        return len(self.columns["frame"])

    def add_frame(
        self,
        frame: int,
        boxes: np.ndarray,
        keypoints: list[np.ndarray | None],
        rules: PersonRules,
        pose_present: list[float | None] | None = None,
        tracklets: list[str | None] | None = None,
        only: list[int] | None = None,
    ) -> None:
        """Boxes (N, 5: x1, y1, x2, y2, score) of one frame with their keypoints (or None), the
        keypoint model's pose-present score (or None) and tracklet id (or None); ``only``: the
        indices of the boxes to write (all by default), each keeping its index in the frame."""
        present = pose_present if pose_present is not None else [None] * len(boxes)
        tracks = tracklets if tracklets is not None else [None] * len(boxes)
        for i in range(len(boxes)) if only is None else only:
            x1, y1, x2, y2, score = (float(v) for v in boxes[i][:5])
            kps = keypoints[i]
            status = person_reason(x1, y1, x2, y2, score, kps, rules)
            row = {
                "frame": int(frame),
                "box": i,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "score": score,
                "keypoints": [] if kps is None else np.asarray(kps, dtype=np.float32).ravel().tolist(),
                "valid": status == "ok",
                "status": status,
                "detector": self.detector,
                "keypoint_model": self.keypoint_model,
                "pose_present": present[i],
                "tracklet": tracks[i],
            }
            for key, value in row.items():
                self.columns[key].append(value)


def write_video_boxes(
    path: Path,
    video_id: str,
    rows: BoxRows,
    frames_sampled: int,
    note: str = "",
    threshold: float | None = None,
) -> None:
    """Write one video's boxes atomically (the file's existence means "this video is done");
    ``note`` says what went wrong short of failing (e.g. frames that could not be decoded);
    ``threshold`` is the keypoint threshold the rules applied (recorded for the stats report)."""
    box_file.write(
        path,
        dict(rows.columns, video_id=[video_id] * len(rows)),
        frames_sampled=str(frames_sampled),
        detector=rows.detector,
        keypoint_model=rows.keypoint_model,
        note=note,
        **({"keypoint_threshold": repr(float(threshold))} if threshold is not None else {}),
    )


def read_video_summary(path: Path) -> dict[str, Any]:
    """frames_sampled, boxes, valid_boxes, status and reason of one finished video file, and
    ``reasons``: its boxes counted by status code."""
    from collections import Counter

    table = box_file.read(path, ["valid", "status"])
    meta = box_file.metadata(path)
    return {
        "frames_sampled": int(meta.get("frames_sampled", "0")),
        "boxes": len(table),
        "valid_boxes": int(table["valid"].astype(bool).sum()),
        "status": "ok",
        "reason": meta.get("note", ""),
        "reasons": dict(Counter(table["status"].tolist())),
    }

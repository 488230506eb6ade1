"""Seeded person-shaped boxes on real footage, written as ``detections/<id>.parquet``: input
for the build-shards tests that must not depend on a detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from common.manifests import boxes as box_file

STEP = 25  # the demo config's frame_step
PER_FRAME = 3


def video_shape(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) as OpenCV's container properties state them."""
    cap = cv2.VideoCapture(str(path))
    shape = tuple(
        int(cap.get(p))
        for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
    )
    cap.release()
    return shape  # type: ignore[return-value]


def write_detections(root: Path, videos: dict[str, Path], seed: int = 0) -> pd.DataFrame:
    """``detections/<id>.parquet`` in the agreed schema: seeded person-shaped boxes on every
    ``STEP``-th frame, about 80 % valid; returns the valid rows (what build-shards must cut)."""
    rng = np.random.default_rng(seed)
    valid = []
    for vid, path in sorted(videos.items()):
        n_frames, width, height = video_shape(path)
        rows = []
        for frame in range(0, max(n_frames, 1), STEP):
            for box in range(PER_FRAME):
                w = float(rng.uniform(24, width / 4))
                h = min(w * float(rng.uniform(1.6, 3.5)), height - 1.0)
                x1, y1 = float(rng.uniform(-8, width - w)), float(rng.uniform(0, height - h))
                rows.append(
                    dict(video_id=vid, frame=frame, box=box, x1=x1, y1=y1, x2=x1 + w, y2=y1 + h)
                    | dict(score=float(rng.uniform(0.7, 1.0)), keypoints=[0.0] * 51)
                    | dict(valid=bool(rng.random() < 0.8), status="ok", detector="hog", keypoint_model="none")
                    | dict(pose_present=None, tracklet=None)
                )
        table = pd.DataFrame(rows)
        table["status"] = np.where(table["valid"], "ok", "low_score")
        box_file.path_of(root, vid).parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(box_file.path_of(root, vid), index=False)
        valid.append(table[table["valid"]])
    return pd.concat(valid, ignore_index=True)

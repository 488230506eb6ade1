"""``detections/<video_id>.parquet``: one row per detected box, written once per video, atomically.

Columns: video_id, frame, box (index within its frame, best score first), x1, y1, x2, y2 (source
pixels), score, keypoints (17 x (x, y, conf) flattened to 51 floats; empty when not computed:
``--keypoints none`` or a box that already failed a box rule), valid, reason, detector,
keypoint_model. The file's schema metadata holds ``frames_sampled`` (a video may have no boxes)
and a ``note`` when some sampled frames could not be decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path
from detect.person_rules import PersonRules, person_reason


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("video_id", pa.string()),
            ("frame", pa.int64()),
            ("box", pa.int32()),
            ("x1", pa.float32()),
            ("y1", pa.float32()),
            ("x2", pa.float32()),
            ("y2", pa.float32()),
            ("score", pa.float32()),
            ("keypoints", pa.list_(pa.float32())),
            ("valid", pa.bool_()),
            ("reason", pa.string()),
            ("detector", pa.string()),
            ("keypoint_model", pa.string()),
        ]
    )


class BoxRows:
    """The rows of one video, accumulated frame by frame."""

    def __init__(self, detector: str, keypoint_model: str) -> None:
        self.detector, self.keypoint_model = detector, keypoint_model
        self.columns: dict[str, list] = {name: [] for name in _schema().names}

    def __len__(self) -> int:
        return len(self.columns["frame"])

    def add_frame(
        self, frame: int, boxes: np.ndarray, keypoints: list[np.ndarray | None], rules: PersonRules
    ) -> None:
        """Boxes (N, 5: x1, y1, x2, y2, score) of one frame with their keypoints (or None)."""
        for i, (box, kps) in enumerate(zip(boxes, keypoints, strict=True)):
            x1, y1, x2, y2, score = (float(v) for v in box[:5])
            reason = person_reason(x1, y1, x2, y2, score, kps, rules)
            row = {
                "frame": int(frame),
                "box": i,
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "score": score,
                "keypoints": [] if kps is None else np.asarray(kps, dtype=np.float32).ravel().tolist(),
                "valid": reason == "ok",
                "reason": reason,
                "detector": self.detector,
                "keypoint_model": self.keypoint_model,
            }
            for key, value in row.items():
                self.columns[key].append(value)


def write_video_boxes(path: Path, video_id: str, rows: BoxRows, frames_sampled: int, note: str = "") -> None:
    """Write one video's boxes atomically (the file's existence means "this video is done");
    ``note`` says what went wrong short of failing (e.g. frames that could not be decoded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = dict(rows.columns, video_id=[video_id] * len(rows))
    schema = _schema().with_metadata(
        {
            "frames_sampled": str(frames_sampled),
            "detector": rows.detector,
            "keypoint_model": rows.keypoint_model,
            "note": note,
        }
    )
    table = pa.table(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_video_summary(path: Path) -> dict[str, Any]:
    """frames_sampled, boxes, valid_boxes, status and reason of one finished video file, and
    ``reasons``: its boxes counted by validity reason."""
    from collections import Counter

    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["valid", "reason"])
    meta = table.schema.metadata or {}
    valid = table.column("valid").to_pylist()
    return {
        "frames_sampled": int(meta.get(b"frames_sampled", b"0")),
        "boxes": len(valid),
        "valid_boxes": int(sum(bool(v) for v in valid)),
        "status": "ok",
        "reason": meta.get(b"note", b"").decode(),
        "reasons": dict(Counter(table.column("reason").to_pylist())),
    }

"""``detections.parquet``: detect's per-root summary, one row per kept video of ``video_filter.parquet``.

Columns: video_id, frames_sampled, boxes, valid_boxes, status, reason (the boxes themselves are
in ``detections/<video_id>.parquet``). detect writes it with ``write`` after every run; ``read``
returns it checked: a damaged or foreign file is a one-line ``UsageError`` naming it.
"""

from __future__ import annotations

from pathlib import Path

from common.atomic import write_parquet
from common.manifests.parquet import read_table
from common.manifests.statuses import check_statuses

FILE = "detections.parquet"
COLUMNS = ["video_id", "frames_sampled", "boxes", "valid_boxes", "status", "reason"]
# error: the video could not be read, or its decoding process died when it was decoded alone
# (detect.batch_runner); reason says why
STATUSES = ("ok", "error")
REMEDY = "run detect again to rewrite it"


def write(root: Path, df) -> None:
    """Atomically write ``root/detections.parquet``: ``df``'s ``COLUMNS``, in order."""
    check_statuses(FILE, df["status"], STATUSES)
    write_parquet(Path(root) / FILE, df.reindex(columns=COLUMNS))


def read(root: Path, required: tuple[str, ...] = ("video_id", "status")):
    """``root/detections.parquet``; ``UsageError`` naming it when absent, unreadable or lacking
    one of ``required``."""
    return read_table(Path(root) / FILE, required, "run detect first", REMEDY)

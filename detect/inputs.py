"""detect's inputs, checked before any work: the kept videos of ``video_filter.parquet`` and the
``detections/<video_id>.parquet`` files of videos already done.

A damaged or foreign file is a one-line ``UsageError`` that names it and says what to do, never
a traceback halfway through the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line
from common.manifests import video_filter
from detect.boxes import read_video_summary


def kept_videos(root: Path):
    """Kept rows of ``root/video_filter.parquet`` (checked by ``common.manifests.video_filter``),
    each with a whole frame count."""
    return video_filter.kept(root, ("video_id", "path", "keep", "n_frames"))


def finished_summary(path: Path) -> dict[str, Any]:
    """``read_video_summary`` of a video already done; a file that cannot be read is refused."""
    try:
        return read_video_summary(path)
    except Exception as e:  # a damaged or foreign file where a finished video's boxes should be
        raise UsageError(
            f"{path} is not a readable detections file ({one_line(str(e), 200)}); "
            "delete it and run detect again to redo that video"
        ) from None

"""detect's inputs, checked before any work: the kept videos of ``video_filter.parquet`` and the
``detections/<video_id>.parquet`` files of videos already done.

A damaged or foreign file is a one-line ``UsageError`` that names it and says what to do, never
a traceback halfway through the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line
from detect.boxes import read_video_summary

FILTER_TABLE = "video_filter.parquet"
REFILTER = "run filter again to rewrite it"


def kept_videos(root: Path):
    """Kept rows of ``root/video_filter.parquet``: ``keep`` true/false, a frame count for each."""
    import pandas as pd

    manifest = root / FILTER_TABLE
    if not manifest.is_file():
        raise UsageError(f"{manifest} does not exist: run filter first")
    try:
        videos = pd.read_parquet(manifest)
    except Exception as e:  # a damaged or foreign file
        raise UsageError(
            f"{manifest} is not a readable Parquet file ({one_line(str(e), 200)}); {REFILTER}"
        ) from None
    missing = {"video_id", "path", "keep", "n_frames"} - set(videos.columns)
    if missing:
        raise UsageError(f"{manifest} lacks columns {sorted(missing)}; {REFILTER}")
    if videos["keep"].dtype != bool:
        raise UsageError(f"{manifest}: column keep holds {videos['keep'].dtype}, not true/false; {REFILTER}")
    kept = videos[videos["keep"]].reset_index(drop=True)
    try:
        kept["n_frames"] = kept["n_frames"].astype("int64")
    except (TypeError, ValueError):
        raise UsageError(f"{manifest}: a kept video has no whole frame count; {REFILTER}") from None
    if kept["video_id"].isna().any() or kept["path"].isna().any():
        raise UsageError(f"{manifest}: a kept video has no video_id or path; {REFILTER}")
    return kept


def finished_summary(path: Path) -> dict[str, Any]:
    """``read_video_summary`` of a video already done; a file that cannot be read is refused."""
    try:
        return read_video_summary(path)
    except Exception as e:  # a damaged or foreign file where a finished video's boxes should be
        raise UsageError(
            f"{path} is not a readable detections file ({one_line(str(e), 200)}); "
            "delete it and run detect again to redo that video"
        ) from None

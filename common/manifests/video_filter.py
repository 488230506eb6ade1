"""``video_filter.parquet``: filter's decision on each downloaded video, one row per video.

Columns: video_id, path (relative to the workspace root, as in ``videos.parquet``), city, url and
license (crawl's, carried to every crop), keep (true/false), status (one of ``STATUSES``: ``ok``
when kept, else the rule that dropped it), reason (one line saying why), n_frames, fps, width,
height. filter writes it with ``write``; detect (kept videos) and build-shards / stats read it
with ``read`` or ``kept``. A file that is not such a table (unreadable, a missing column, a
``keep`` that is not true/false, a kept video without an id, with an id that is not a file name,
without a path or a whole frame count) is a one-line ``UsageError`` naming it.
"""

from __future__ import annotations

from pathlib import Path

from common.atomic import write_parquet
from common.errors import UsageError
from common.manifests.parquet import read_table
from common.manifests.statuses import check_statuses

FILE = "video_filter.parquet"
COLUMNS = [
    "video_id", "path", "city", "url", "license", "keep", "status", "reason", "n_frames", "fps", "width", "height",
]  # fmt: skip
STATUSES = ("ok", "duplicate", "unreadable", "too_short", "too_small", "vr", "static", "near_duplicate")
# The typed columns; the others hold text (or nothing) as written, kept as pandas objects.
DTYPES: dict[str, str | type] = {
    "keep": bool,
    "n_frames": "Int64",
    "fps": "float64",
    "width": "Int64",
    "height": "Int64",
}
REQUIRED = ("video_id", "path", "keep")
REMEDY = "run filter again to rewrite it"
ABSENT = "run filter first"


def write(root: Path, df) -> None:
    """Atomically write ``root/video_filter.parquet``: ``df``'s ``COLUMNS``, in order, typed."""
    check_statuses(FILE, df["status"], STATUSES)
    write_parquet(Path(root) / FILE, df.reindex(columns=COLUMNS).astype(DTYPES))


def read(root: Path, required: tuple[str, ...] = REQUIRED, *, absent: str = ABSENT):
    """Every row of ``root/video_filter.parquet``, checked.

    ``UsageError`` naming the file when it does not exist (ending in ``absent``: what to run),
    cannot be read, lacks one of ``required``, or holds a ``keep`` that is not true/false.
    """
    path = Path(root) / FILE
    videos = read_table(path, required, absent, REMEDY)
    if "keep" in videos.columns and videos["keep"].dtype != bool:
        raise UsageError(f"{path}: column keep holds {videos['keep'].dtype}, not true/false; {REMEDY}")
    return videos


def kept(root: Path, required: tuple[str, ...] = REQUIRED, *, absent: str = ABSENT):
    """The kept rows of ``read(root, required)`` (index reset), each with a video id that can name
    a file (no ``/``, no leading dot: the readers name each video's files by it) and a path, and a
    whole frame count (``int64``) when ``n_frames`` is required."""
    path = Path(root) / FILE
    videos = read(root, tuple(dict.fromkeys((*REQUIRED, *required))), absent=absent)
    rows = videos[videos["keep"]].reset_index(drop=True)
    if "n_frames" in required:
        try:
            rows["n_frames"] = rows["n_frames"].astype("int64")
        except (TypeError, ValueError):
            raise UsageError(f"{path}: a kept video has no whole frame count; {REMEDY}") from None
    if rows["video_id"].isna().any() or rows["path"].isna().any():
        raise UsageError(f"{path}: a kept video has no video_id or path; {REMEDY}")
    ids = rows["video_id"].astype(str)
    bad = ids[ids.str.contains("/", regex=False) | ids.str.startswith(".")]
    if len(bad):
        raise UsageError(f"{path}: a kept video has id {bad.iloc[0]!r}, not a file name; {REMEDY}")
    return rows

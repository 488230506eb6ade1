"""``videos.parquet``: one row per candidate video, rewritten atomically after every change.

Columns (DESIGN.md): video_id, url, city, query, title, channel, license and upload_date (yt-dlp's,
when the video page states them), duration_s, width, height, fps,
n_frames, codec, status, reason, path, plus ``bytes`` (file size), and for ``--from-vnames``
``country`` and ``vname`` (the official list's ``country+city+id`` line). ``path`` is relative
to the workspace root; readers use ``root / path``. Only ``video_id``, ``url`` and ``status`` are
required: a manifest made another way (a list of local files) may leave out the rest, which load
empty. A file that is not such a manifest (unreadable, a missing column,
values of another type, a video id that cannot name a file) is a one-line ``UsageError``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common.atomic import write_parquet
from common.errors import UsageError, one_line
from common.manifests.parquet import read_table

MANIFEST = "videos.parquet"
# The status vocabulary of a video (the reason column says why in one line). Transient statuses
# are retried on the next crawl; permanent ones are not.
OK = "ok"
PENDING = "pending"
STATUSES = (OK, "unavailable", "private", "rate_limited", "too_large", "not_found", "not_licensed", "error")
RETRY_ON_RERUN = frozenset({PENDING, "rate_limited", "error"})
REQUIRED = ("video_id", "url", "status")
SAFE_ID = r"[A-Za-z0-9_-]+"  # what collect.ids.sanitize_id leaves: a file name, never a path
REMEDY = "restore it, or move it away and run crawl again (finished files under videos/ are kept)"
COLUMNS: dict[str, str] = {
    "video_id": "str",
    "url": "str",
    "country": "str",
    "city": "str",
    "query": "str",
    "title": "str",
    "channel": "str",
    "license": "str",
    "upload_date": "str",
    "duration_s": "float64",
    "width": "Int64",
    "height": "Int64",
    "fps": "float64",
    "n_frames": "Int64",
    "codec": "str",
    "bytes": "Int64",
    "status": "str",
    "reason": "str",
    "path": "str",
    "vname": "str",
}
PROBED = ("duration_s", "width", "height", "fps", "n_frames", "codec", "bytes")


def provenance(url: Any, license: Any) -> dict[str, str | None]:
    """What a crop publishes of its video's row: the source URL (a remote one only: a local file's
    path is no URL to publish) and the licence; None for a missing value."""
    import pandas as pd

    def text(value: Any) -> str | None:
        return None if value is None or pd.isna(value) else str(value)

    url = text(url)
    return {"url": url if url and url.startswith(("http://", "https://")) else None, "license": text(license)}


def new_row(video_id: str, url: str, **fields: Any) -> dict[str, Any]:
    """A pending row; ``fields`` fills any other column."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(video_id=video_id, url=url, status=PENDING, reason="")
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown manifest columns: {sorted(unknown)}")
    row.update(fields)
    return row


def read_frame(path: Path, required: tuple[str, ...] = REQUIRED):
    """``path`` (a ``videos.parquet``) as a DataFrame with the manifest's dtypes.

    ``UsageError`` naming the file and what to do when it is not a manifest crawl could have
    written: unreadable, lacking one of ``required`` (``video_id`` among them), a row without a
    value in one of them (``path`` may be empty), a value of another type, or a video id outside
    ``[A-Za-z0-9_-]`` (ids name files under the root).
    """
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a Parquet manifest; {REMEDY}")
    df = read_table(path, required, "run crawl first", REMEDY)
    try:
        df = df.astype({c: t for c, t in COLUMNS.items() if c in df.columns})
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"{path} holds values of the wrong type ({one_line(str(e), 200)}); {REMEDY}"
        ) from None
    for column in (c for c in REQUIRED if c in required):
        empty = df.index[df[column].isna()]
        if len(empty):
            raise UsageError(f"{path}: row {empty[0]} has no {column}; {REMEDY}")
    bad = df.index[~df["video_id"].str.fullmatch(SAFE_ID)]
    if len(bad):
        vid = df.loc[bad[0], "video_id"]
        raise UsageError(f"{path}: row {bad[0]} has video id {vid!r}, not a file name; {REMEDY}")
    return df


def load(root: Path) -> list[dict[str, Any]]:
    """Rows of ``root/videos.parquet`` (empty when the file does not exist yet): plain Python values
    (``str``, ``int``, ``float``), ``None`` where empty, every column of ``COLUMNS`` in each row.

    Converted a column at a time: value by value, 73,000 rows took seconds on every crawl start.
    """
    path = root / MANIFEST
    if not path.exists():
        return []
    df = read_frame(path)
    columns = [
        df[c].astype(object).where(df[c].notna(), None).tolist() if c in df.columns else [None] * len(df)
        for c in COLUMNS
    ]
    return [dict(zip(COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)]


def to_frame(rows: list[dict[str, Any]]):
    """The rows as a DataFrame with the manifest's column order and dtypes."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(COLUMNS)


def save(root: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically rewrite ``root/videos.parquet``: a kill at any moment leaves a complete file."""
    write_parquet(root / MANIFEST, to_frame(rows))


class Saver:
    """Rewrites ``root/videos.parquet`` while ``rows`` change (``maybe``, after each video): at
    least ``every_s`` seconds apart, and at most ``share`` of the time when a rewrite takes longer.
    A rewrite costs time in proportion to the manifest (0.3-0.6 s at 73,000 rows), so a fixed
    interval made a long run quadratic in its size."""

    def __init__(self, root: Path, rows: list[dict[str, Any]], every_s: float, share: float) -> None:
        self.root, self.rows, self.every_s, self.share = root, rows, every_s, share
        self.last, self.cost = float("-inf"), 0.0

    def maybe(self) -> None:
        if time.monotonic() - self.last >= max(self.every_s, self.cost / self.share):
            began = time.monotonic()
            save(self.root, self.rows)
            self.last = time.monotonic()
            self.cost = self.last - began

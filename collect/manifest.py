"""``videos.parquet``: one row per candidate video, rewritten atomically after every change.

Columns (DESIGN.md): video_id, url, city, query, title, channel, duration_s, width, height, fps,
n_frames, codec, status, reason, path, plus ``bytes`` (file size), and for ``--from-vnames``
``country`` and ``vname`` (the official list's ``country+city+id`` line). ``path`` is relative
to the workspace root; readers use ``root / path``. A manifest written before a column existed
loads with that column empty.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from collect.failures import PENDING
from common.atomic import write_parquet
from common.errors import UsageError

MANIFEST = "videos.parquet"
COLUMNS: dict[str, str] = {
    "video_id": "str",
    "url": "str",
    "country": "str",
    "city": "str",
    "query": "str",
    "title": "str",
    "channel": "str",
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


def new_row(video_id: str, url: str, **fields: Any) -> dict[str, Any]:
    """A pending row; ``fields`` fills any other column."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(video_id=video_id, url=url, status=PENDING, reason="")
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown manifest columns: {sorted(unknown)}")
    row.update(fields)
    return row


def _plain(value: Any) -> Any:
    """pandas missing values (NaN, NA) -> None; numpy scalars -> Python scalars."""
    if value is None:
        return None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def load(root: Path) -> list[dict[str, Any]]:
    """Rows of ``root/videos.parquet`` (empty when the file does not exist yet)."""
    import pandas as pd

    path = root / MANIFEST
    if not path.exists():
        return []
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # a foreign or damaged file: say which and stop
        raise UsageError(f"{path} is not a readable Parquet manifest: {e}") from None
    missing = [c for c in ("video_id", "url", "status") if c not in df.columns]
    if missing:
        raise UsageError(f"{path} lacks columns {missing}; move it away to start a new crawl")
    rows = []
    for record in df.to_dict("records"):
        row = dict.fromkeys(COLUMNS)
        row.update({k: _plain(v) for k, v in record.items() if k in COLUMNS})
        rows.append(row)
    return rows


def to_frame(rows: list[dict[str, Any]]):
    """The rows as a DataFrame with the manifest's column order and dtypes."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(COLUMNS)


def save(root: Path, rows: list[dict[str, Any]]) -> None:
    """Atomically rewrite ``root/videos.parquet``: a kill at any moment leaves a complete file."""
    write_parquet(root / MANIFEST, to_frame(rows))

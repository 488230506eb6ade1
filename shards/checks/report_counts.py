"""Counts of ``report.html``: the per-video table (filter's decision, detect's outcome, boxes per
status, crops written) and its summaries, from the workspace files themselves.

The table has one row per video, 46,260 at LUPerson's size: it goes beside the page as a CSV file
(``report_files/per_video.csv``), and the page shows counts of it and its first ``TOP`` rows by a
few orders (most boxes dropped, most frames sampled, detect's errors), so the page's size does not
grow with the number of videos. Built column by column (no loop over videos).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.manifests import boxes, detections, video_filter
from shards.checks.box_tally import BoxTally

NONE = "-"  # on the page: a value that does not apply (the video was dropped, or has no box file)
TOP = 20  # rows of each per-video list on the page
FILE = "per_video.csv"


def _filter_table(root: Path):
    """``video_filter.parquet``'s city, status and reason by video id (empty when absent)."""
    import pandas as pd

    columns = ["city", "filter", "filter reason"]
    if not (root / video_filter.FILE).is_file():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="video"))
    table = video_filter.read(root, ("video_id", "keep")).reindex(
        columns=["video_id", "city", "status", "reason"]
    )
    table = table.drop_duplicates("video_id", keep="last").set_index("video_id")
    table.columns, table.index.name = columns, "video"
    table["city"] = table["city"].fillna("").astype(str)
    return table


def _detect_table(root: Path):
    """``detections.parquet``'s status, reason and frames sampled by video id (empty when absent)."""
    import pandas as pd

    columns = ["detect", "detect reason", "frames sampled"]
    if not (root / detections.FILE).is_file():
        return pd.DataFrame(columns=columns, index=pd.Index([], name="video"))
    table = detections.read(root).reindex(columns=["video_id", "status", "reason", "frames_sampled"])
    table = table.drop_duplicates("video_id", keep="last").set_index("video_id")
    table.columns, table.index.name = columns, "video"
    return table.astype({"frames sampled": "Int64"})


def per_video(root: Path, counted: BoxTally, samples):
    """One row per video of the filter or with a box file, sorted by id. Columns: video, city,
    filter, filter reason, detect, detect reason, frames sampled, boxes, one per box status present,
    crops written (``samples.parquet`` rows ``ok`` of the video). Empty (NA) where a value does not
    apply: no filter row, not detected, no box file."""
    import pandas as pd

    root = Path(root)
    statuses = list(counted.by_status())
    picked = counted.counts[:, [boxes.STATUSES.index(s) for s in statuses]]
    ids = pd.Index(counted.video_ids, name="video")
    counts = pd.DataFrame(picked, index=ids, columns=statuses).astype("Int64")
    counts.insert(0, "boxes", pd.array(counted.counts.sum(axis=1), dtype="Int64"))
    filtered, detected = _filter_table(root), _detect_table(root)
    every = pd.Index(sorted(set(filtered.index) | set(ids)), name="video")
    table = filtered.reindex(every).join(detected).join(counts)
    written = samples.loc[samples["status"] == "ok", "video_id"].value_counts()
    table["crops written"] = written.reindex(every, fill_value=0).to_numpy(np.int64)
    return table.reset_index()


def write_csv(path: Path, table) -> None:
    """``table`` as CSV at ``path``, atomically (empty cells: does not apply)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def summary(table) -> list[tuple[str, int]]:
    """How many videos the per-video table holds, and how many of them reached each step."""
    boxes_known = table["boxes"].notna()
    return [
        ("videos", len(table)),
        ("kept by filter", int((table["filter"] == "ok").sum())),
        ("detected (in detections.parquet)", int(table["detect"].notna().sum())),
        ("with a box file", int(boxes_known.sum())),
        ("with a kept box (ok)", int((table["ok"] > 0).sum()) if "ok" in table else 0),
        ("with crops written", int((table["crops written"] > 0).sum())),
    ]


def status_tally(table, column: str) -> list[tuple[str, int]]:
    """Videos per value of ``column`` (filter's or detect's status), most first."""
    counts = table[column].dropna().value_counts()
    return sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def per_city(table):
    """The per-video table summed by city (``(none)``: no city), most videos first: videos, kept
    by filter, with a box file, boxes, kept boxes (ok), crops written."""
    import pandas as pd

    ok = table["ok"] if "ok" in table else pd.Series(0, index=table.index)
    parts = pd.DataFrame(
        {
            "city": table["city"].fillna("").replace("", "(none)"),
            "videos": 1,
            "kept by filter": (table["filter"] == "ok").astype(int),
            "with a box file": table["boxes"].notna().astype(int),
            "boxes": table["boxes"].fillna(0),
            "ok": ok.fillna(0),
            "crops written": table["crops written"],
        }
    )
    cities = parts.groupby("city", sort=True).sum().astype(np.int64).reset_index()
    return cities.sort_values(["videos", "city"], ascending=[False, True], kind="stable")


def top_lists(table) -> list[tuple[str, int, object]]:
    """The page's per-video lists: (title, rows in all, the first ``TOP`` rows), each by one order."""
    dropped = table["boxes"].fillna(0) - (table["ok"].fillna(0) if "ok" in table else 0)
    frames = table["frames sampled"].fillna(0)
    errors = table[table["detect"] == "error"]
    lists = [
        ("most boxes dropped by §3.1's rules", table.assign(_key=dropped)[dropped > 0]),
        ("most frames sampled (detect's longest)", table.assign(_key=frames)[frames > 0]),
    ]
    out = []
    for title, rows in lists:
        rows = rows.sort_values(["_key", "video"], ascending=[False, True], kind="stable")
        out.append((f"The videos with the {title}", len(rows), rows.drop(columns="_key").head(TOP)))
    out.append(("Videos detect could not read", len(errors), errors.head(TOP)))
    return out


def cells(rows) -> list[list[str]]:
    """Rows of the per-video table as page cells: ``NONE`` where a value does not apply."""
    import pandas as pd

    return [[NONE if pd.isna(v) else str(v) for v in row] for row in rows.itertuples(index=False)]

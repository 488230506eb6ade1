"""The dataset's figures in the shape of the paper's Table 1 (images, scenes, persons, crop size).

Estimated persons follow §3.1: for each video take the sampled frame with the most valid
persons, and sum that maximum over the videos. Everything is computed from
``shards/samples.parquet`` (one row per valid box or imported image), plus
``video_filter.parquet`` and ``detections/`` when the workspace has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.manifests import samples as samples_file
from common.manifests import video_filter
from common.manifests.shard_index import INDEX_NAME, read_shard_index
from common.table import aligned
from shards.checks.box_tally import BoxTally, tally

# The paper's row of Table 1, printed next to ours.
PAPER_ROW = {
    "images": 4_180_243,
    "videos": 46_260,
    "cities": 100,
    "estimated_persons": 219_848,
    "detector": "YOLOv5",
    "crop size": "vary",
}


def face_stats(ok) -> dict[str, int] | None:
    """Face blurring over the written crops (``faces``: regions blurred, -1 when it was off):
    crops checked, crops with a face blurred, regions blurred; None when no crop was checked."""
    checked = ok.loc[ok["faces"] >= 0, "faces"]
    if checked.empty:
        return None
    return {
        "crops_checked": len(checked),
        "crops_with_faces": int((checked > 0).sum()),
        "regions": int(checked.sum()),
        "crops_not_checked": len(ok) - len(checked),
    }


def estimated_persons(samples) -> int | None:
    """Sum over videos of the most valid persons (crops written) in one sampled frame (§3.1)."""
    framed = samples.loc[
        (samples["status"] == "ok") & (samples["frame"] >= 0) & (samples["video_id"] != ""),
        ["video_id", "frame"],
    ]
    if framed.empty:
        return None
    per_frame = framed.groupby(["video_id", "frame"]).size()
    return int(per_frame.groupby(level="video_id").max().sum())


def _range(series) -> dict[str, float]:
    if series.empty:
        return {}
    return {"min": int(series.min()), "median": float(series.median()), "max": int(series.max())}


def _counts(series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts().sort_index().items()}


def video_filter_stats(root: Path) -> dict[str, Any] | None:
    if not (root / video_filter.FILE).is_file():
        return None
    videos = video_filter.read(root, ("keep", "status"))
    kept = videos[videos["keep"]]
    stats: dict[str, Any] = {"videos": len(videos), "kept": len(kept), "reasons": _counts(videos["status"])}
    if "city" in videos.columns:
        stats["kept_per_city"] = _counts(kept["city"].fillna(""))
    return stats


def detection_stats(counted: BoxTally) -> dict[str, Any] | None:
    """Boxes per reason and the detector names, over every box file (``None``: there is none)."""
    if not counted.files:
        return None
    return {
        "videos": len(counted.files),
        "boxes": int(counted.counts.sum()),
        "valid": counted.valid,
        "reasons": dict(sorted(counted.by_status().items())),
        "detector": counted.detectors,
    }


def dataset_stats(root: Path, samples=None, counted: BoxTally | None = None) -> dict[str, Any]:
    """stats.json: Table 1 figures, crop sizes, failures, and per-city / per-reason counts;
    ``samples`` (``shards/samples.parquet``) and ``counted`` (``box_tally.tally``) when the caller
    has them already."""
    import pandas as pd

    root = Path(root)
    samples = samples_file.read(root / "shards") if samples is None else samples
    ok = samples.loc[samples["status"] == "ok", ["video_id", "city", "width", "height", "faces", "license"]]
    source = ",".join(sorted(samples["source"].unique())) or "none"
    videos = ok.loc[ok["video_id"] != "", "video_id"].nunique()
    cities = ok.loc[ok["city"] != "", "city"].nunique()
    has_index = (root / "shards" / INDEX_NAME).is_file()
    index = read_shard_index(root / "shards") if has_index else pd.DataFrame({"bytes": []})
    notes = []
    if source == "images":
        notes.append("imported from an image folder: no videos, cities, frames or scores")
    if source == "lmdb":
        notes.append("imported from the LUPerson LMDB: city and video numbers from the keys, no frames")
    if source == "dets":
        notes.append("cut from the released LUPerson boxes (--from-dets): no detector ran here")
    return {
        "source": source,
        "images": len(ok),
        "failed": _counts(samples.loc[samples["status"] != "ok", "status"]),
        "videos": int(videos) if videos else None,
        "cities": int(cities) if cities else None,
        "estimated_persons": estimated_persons(samples) if source in ("detections", "dets") else None,
        "crop_width": _range(ok["width"]),
        "crop_height": _range(ok["height"]),
        "shards": len(index),
        "bytes": int(index["bytes"].sum()),
        "crops_per_city": _counts(ok.loc[ok["city"] != "", "city"]),
        "licenses": _counts(ok["license"].replace("", "unknown")) if len(ok) else {},
        "faces": face_stats(ok),
        "video_filter": video_filter_stats(root),
        "detections": detection_stats(tally(root) if counted is None else counted),
        "notes": notes,
    }


def table1(stats: dict[str, Any]) -> str:
    """Our row under the paper's, with Table 1's columns."""

    def size(s: dict[str, Any]) -> str:
        w, h = s.get("crop_width") or {}, s.get("crop_height") or {}
        if not w:
            return "-"
        return f"{w['min']}-{w['max']} x {h['min']}-{h['max']}"

    def show(value: Any) -> str:
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    detector = ",".join((stats.get("detections") or {}).get("detector") or []) or {
        "dets": "released boxes"
    }.get(stats["source"], stats["source"])
    header = [
        "Datasets",
        "#images",
        "#scene(videos)",
        "#cities",
        "#persons",
        "detector",
        "crop size (WxH px)",
    ]
    rows = [
        header,
        [
            "LUPerson (paper)",
            *(show(PAPER_ROW[k]) for k in ("images", "videos", "cities", "estimated_persons")),
        ]
        + [PAPER_ROW["detector"], PAPER_ROW["crop size"]],
        ["this build", *(show(stats[k]) for k in ("images", "videos", "cities", "estimated_persons"))]
        + [detector, size(stats)],
    ]
    return aligned(rows)

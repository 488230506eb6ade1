"""Counts of ``report.html``: boxes per detection status, and per video (filter's decision, detect's
outcome, boxes per status, crops written), from the workspace files themselves."""

from __future__ import annotations

from pathlib import Path

from common.manifests import boxes, detections, video_filter

NONE = "-"  # a count that does not apply (the video was dropped, or has no box file)


def status_order(statuses) -> list[str]:
    """The statuses present, in ``boxes.STATUSES`` order (§3.1's; ``boxes.read`` admits no other)."""
    present = set(statuses)
    return [s for s in boxes.STATUSES if s in present]


def status_counts(all_boxes) -> dict[str, int]:
    """Boxes per status over every ``detections/*.parquet``, in ``status_order``."""
    counts = all_boxes["status"].value_counts()
    return {s: int(counts[s]) for s in status_order(counts.index)}


def _filter_rows(root: Path):
    """``video_filter.parquet`` as {video_id: (city, status, reason)} (empty when absent)."""
    if not (root / video_filter.FILE).is_file():
        return {}
    table = video_filter.read(root, ("video_id", "keep"))
    text = table.reindex(columns=["city", "status", "reason"]).fillna("").astype(str)
    return {
        str(v): (c, s, r)
        for v, c, s, r in zip(table["video_id"], text["city"], text["status"], text["reason"], strict=True)
    }


def _detect_status(root: Path) -> dict[str, str]:
    """detect's outcome per video from ``detections.parquet`` (empty when absent)."""
    if not (root / detections.FILE).is_file():
        return {}
    table = detections.read(root)
    return dict(zip(table["video_id"].astype(str), table["status"].astype(str), strict=True))


def per_video(root: Path, all_boxes, samples) -> tuple[list[str], list[list[str]]]:
    """The per-video table: header and rows (every video of the filter or with boxes, sorted).

    Columns: video, city, filter (status), filter reason, detect (status), boxes, one per box
    status present, crops written (``samples.parquet`` rows ``ok`` of that video).
    """
    root = Path(root)
    filtered, detected = _filter_rows(root), _detect_status(root)
    statuses = status_order(all_boxes["status"])
    table = all_boxes.groupby(["video_id", "status"]).size().unstack(fill_value=0)
    with_file = set(all_boxes["file"].map(lambda f: Path(f).stem))
    written = samples.loc[samples["status"] == "ok", "video_id"].value_counts()
    header = ["video", "city", "filter", "filter reason", "detect", "boxes", *statuses, "crops written"]
    rows = []
    for vid in sorted(set(filtered) | set(table.index) | with_file):
        city, status, reason = filtered.get(vid, ("", NONE, ""))
        if vid in table.index:
            counts = [str(int(table.loc[vid].sum()))] + [str(int(table.loc[vid].get(s, 0))) for s in statuses]
        elif vid in with_file:
            counts = ["0"] * (1 + len(statuses))
        else:
            counts = [NONE] * (1 + len(statuses))
        crops = str(int(written.get(vid, 0)))
        rows.append([vid, city, status, reason, detected.get(vid, NONE), *counts, crops])
    return header, rows

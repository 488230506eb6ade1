"""``python pipeline.py filter``: keep or drop each downloaded video, with one reason (§3.1).

Reads the rows of ``videos.parquet`` with status "ok" and writes ``video_filter.parquet``, one row
per such video. Reasons, checked in this order (the first that applies wins):

- ``duplicate``: the same video id as an earlier row;
- ``unreadable``: cannot be opened or decoded, or the file holds fewer frames than it declares;
- ``too_short``: fewer than ``min_frames`` frames (the paper: 100);
- ``too_small``: frames narrower than ``min_frame_width`` or shorter than ``min_frame_height``
  (default 64x128, the HOG detector's window: OpenCV's HOG crashes on smaller frames);
- ``vr``: 360°/VR footage (``filter.vr``: spherical/stereo metadata, 2:1 frames, title words);
- ``static``: ``static_frames`` evenly spaced frames identical: shrunk to ``static_width`` pixels
  wide, each differs from the first by a mean absolute difference <= ``static_tolerance`` (0-255);
- ``near_duplicate``: the same clip as an earlier kept video by perceptual hashes of those frames
  (mean Hamming distance <= ``near_duplicate_distance`` of 64 bits).

Probing (the only per-video work) runs on ``common.engine``: a local process pool, or Ray tasks
with ``--engine ray``; the decisions are made here in manifest order, so the output is the same.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from common.engine import run_tasks
from common.errors import UsageError
from common.fanout import fanned_path
from common.manifests import video_filter
from common.manifests.videos import MANIFEST, read_frame
from filter.near_dup import near_duplicates
from filter.probe import Probe, cached_probe
from filter.settings import FilterSettings
from filter.vr import vr_signal

log = logging.getLogger(__name__)
PROBE_DIR = "filter_probes"  # one cached probe per video: <bucket>/<id>.json (common.fanout)


def load_videos(root: Path):
    """The rows of ``root/videos.parquet`` whose status is "ok" (checked by ``common.manifests.videos``:
    a damaged or foreign file is a one-line ``UsageError``)."""
    manifest = root / MANIFEST
    if not manifest.exists():
        raise UsageError(f"{manifest} does not exist: run crawl first")
    videos = read_frame(manifest, required=("video_id", "status", "path"))
    return videos[videos["status"] == "ok"].reset_index(drop=True)


def _probe_task(task: tuple[str, str, int, int]) -> Probe:
    path, cache, count, width = task
    return cached_probe(path, count, width, Path(cache))


def _probe_crashed(task: tuple[str, str, int, int], why: str) -> Probe:
    """The probe of a video whose process died (a decoder crash): ``unreadable``, not cached, so
    the next run tries it again."""
    return Probe(error=f"probing crashed: {why}")


def probe_all(tasks: list[tuple[str, str, int, int]], cfg: FilterSettings) -> list[Probe]:
    """Probe every (path, cache, frames, width) task on ``cfg.engine``, in the order of ``tasks``;
    a video whose probe kills its process is its own ``unreadable`` row, the others finish."""
    probes: list[Probe | None] = [None] * len(tasks)
    results = run_tasks(
        _probe_task,
        tasks,
        engine=cfg.engine,
        workers=cfg.workers,
        address=cfg.address,
        desc="filter: probing",
        isolate=_probe_crashed,
    )
    for i, probe in results:
        probes[i] = probe
    return probes  # type: ignore[return-value]  # every index was filled


def decide(probe: Probe, title: str | None, cfg: FilterSettings) -> tuple[str, str]:
    """(status, reason) of one probed, non-duplicate video, before the near-duplicate check."""
    if probe.error:
        return "unreadable", probe.error
    if probe.n_frames < cfg.min_frames:
        return "too_short", f"{probe.n_frames} frames < {cfg.min_frames}"
    if probe.width < cfg.min_frame_width or probe.height < cfg.min_frame_height:
        size, least = f"{probe.width}x{probe.height}", f"{cfg.min_frame_width}x{cfg.min_frame_height}"
        return "too_small", f"{size} frames, smaller than {least}"
    signal = vr_signal(probe.vr_metadata or None, probe.width, probe.height, title, cfg.vr_title_keywords)
    if signal:
        return "vr", signal
    if probe.static_diff <= cfg.static_tolerance:
        return "static", f"max frame difference {probe.static_diff:.3f} <= {cfg.static_tolerance}"
    return "ok", f"max frame difference {probe.static_diff:.3f}"


def mark_near_duplicates(rows: list[dict[str, Any]], probes: dict[int, Probe], cfg: FilterSettings) -> None:
    """Turn kept rows whose hashes match an earlier kept row into ``near_duplicate`` (in place).

    Only rows with all ``static_frames`` hashes take part; ``filter.near_dup`` decides, in row order.
    """
    k = cfg.static_frames
    rows_in = [i for i, row in enumerate(rows) if row["status"] == "ok" and len(probes[i].hashes) == k]
    signatures = np.empty((len(rows_in), k), dtype=np.uint64)  # one matrix, filled once
    for n, i in enumerate(rows_in):
        signatures[n] = [int(h, 16) for h in probes[i].hashes]
    for i, match in zip(rows_in, near_duplicates(signatures, cfg.near_duplicate_distance), strict=True):
        if match is not None:
            like, distance = rows[rows_in[match[0]]]["video_id"], match[1]
            rows[i].update(status="near_duplicate", reason=f"like {like} (distance {distance:.1f})")


def filter_videos(cfg: FilterSettings, root: Path) -> dict[str, Any]:
    """Write ``video_filter.parquet`` (``common.manifests.video_filter``); return counts per status."""
    import pandas as pd

    videos = load_videos(root)
    absolute = root.resolve()  # workers (Ray tasks on other nodes included) get absolute paths
    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    tasks: list[tuple[str, str, int, int]] = []
    task_rows: list[int] = []
    for v in videos.itertuples(index=False):
        vid, path = str(v.video_id), str(v.path)
        rows.append(
            {
                "video_id": vid,
                "path": path,
                "city": None if pd.isna(getattr(v, "city", None)) else str(v.city),
                "title": None if pd.isna(getattr(v, "title", None)) else str(v.title),
                "status": "duplicate" if vid in seen else "",
                "reason": "same video id as an earlier row" if vid in seen else "",
            }
        )
        if vid not in seen:
            cache = fanned_path(absolute / PROBE_DIR, vid, f"{vid}.json")
            tasks.append((str(absolute / path), str(cache), cfg.static_frames, cfg.static_width))
            task_rows.append(len(rows) - 1)
        seen.add(vid)
    probes = dict(zip(task_rows, probe_all(tasks, cfg), strict=True))
    for i, probe in probes.items():
        status, reason = decide(probe, rows[i]["title"], cfg)
        rows[i].update(
            status=status,
            reason=reason,
            n_frames=probe.n_frames,
            fps=probe.fps,
            width=probe.width,
            height=probe.height,
        )
    if cfg.near_duplicate:
        mark_near_duplicates(rows, probes, cfg)
    for row in rows:
        row["keep"] = row["status"] == "ok"
    video_filter.write(root, pd.DataFrame(rows, columns=video_filter.COLUMNS))
    statuses = Counter(row["status"] for row in rows)
    log.info("filter: kept %d of %d videos; %s", statuses.get("ok", 0), len(rows), dict(statuses))
    return {
        "videos": len(rows),
        "kept": statuses.get("ok", 0),
        "dropped": {s: statuses[s] for s in sorted(statuses) if s != "ok"},
    }

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
- ``near_duplicate``: the same clip as a kept video earlier in plan order (the order of the
  videos' crops in the shards, ``common.manifests.samples.video_order``) by perceptual hashes of
  those frames (mean Hamming distance <= ``near_duplicate_distance`` of 64 bits).

Probing (the only per-video work) runs on ``common.engine``: a local process pool, or Ray tasks
with ``--engine ray``; the decisions are made here (``filter_rows``, which the streaming build
shares), so the output does not depend on the engine.
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
from common.manifests.samples import video_order
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


def signature(probe: Probe, cfg: FilterSettings) -> np.ndarray | None:
    """The ``static_frames`` frame hashes of a probe as uint64, or None when it has fewer."""
    if len(probe.hashes) != cfg.static_frames:
        return None
    return np.array([int(h, 16) for h in probe.hashes], dtype=np.uint64)


def mark_near_duplicates(rows: list[dict[str, Any]], probes: dict[str, Probe], cfg: FilterSettings) -> None:
    """Turn kept rows whose hashes match an earlier kept row into ``near_duplicate`` (in place).

    "Earlier" is in plan order (``video_order``, the order of the videos' crops in the shards),
    not the manifest's: the video kept of two copies is the same whatever order they were found or
    downloaded in, which lets the streaming build decide each video as it arrives. Only rows with
    all ``static_frames`` hashes take part; ``filter.near_dup`` decides.
    """
    found = {
        i: signature(probes[row["video_id"]], cfg) for i, row in enumerate(rows) if row["status"] == "ok"
    }
    rows_in = sorted(
        (i for i, sig in found.items() if sig is not None), key=lambda i: video_order(rows[i]["video_id"])
    )
    signatures = np.empty((len(rows_in), cfg.static_frames), dtype=np.uint64)  # one matrix, filled once
    for n, i in enumerate(rows_in):
        signatures[n] = found[i]
    for i, match in zip(rows_in, near_duplicates(signatures, cfg.near_duplicate_distance), strict=True):
        if match is not None:
            rows[i].update(
                status="near_duplicate", reason=near_duplicate_reason(rows[rows_in[match[0]]], match)
            )


def near_duplicate_reason(like: dict[str, Any], match: tuple[int, float]) -> str:
    return f"like {like['video_id']} (distance {match[1]:.1f})"


def filter_rows(videos, probes: dict[str, Probe], cfg: FilterSettings) -> list[dict[str, Any]]:
    """The rows of ``video_filter.parquet`` for ``videos`` (the ok rows of ``videos.parquet``, in
    order) from ``probes`` (the probe of each distinct video id): status, reason, size, keep."""
    import pandas as pd

    seen: set[str] = set()
    rows: list[dict[str, Any]] = []
    for v in videos.itertuples(index=False):
        vid = str(v.video_id)
        row = {
            "video_id": vid,
            "path": str(v.path),
            "city": None if pd.isna(getattr(v, "city", None)) else str(v.city),
            "title": None if pd.isna(getattr(v, "title", None)) else str(v.title),
            "url": None if pd.isna(getattr(v, "url", None)) else str(v.url),
            "license": None if pd.isna(getattr(v, "license", None)) else str(v.license),
            "status": "duplicate",
            "reason": "same video id as an earlier row",
        }
        if vid not in seen:
            probe = probes[vid]
            status, reason = decide(probe, row["title"], cfg)
            row.update(status=status, reason=reason, n_frames=probe.n_frames, fps=probe.fps)
            row.update(width=probe.width, height=probe.height)
        seen.add(vid)
        rows.append(row)
    if cfg.near_duplicate:
        mark_near_duplicates(rows, probes, cfg)
    for row in rows:
        row["keep"] = row["status"] == "ok"
    return rows


def probe_tasks(videos, root: Path, cfg: FilterSettings) -> dict[str, tuple[str, str, int, int]]:
    """``video id -> (path, cache, frames, width)``: the probe task of each distinct video."""
    absolute = root.resolve()  # workers (Ray tasks on other nodes included) get absolute paths
    tasks: dict[str, tuple[str, str, int, int]] = {}
    for v in videos.itertuples(index=False):
        vid = str(v.video_id)
        if vid not in tasks:
            cache = probe_cache(absolute, vid)
            tasks[vid] = (str(absolute / str(v.path)), str(cache), cfg.static_frames, cfg.static_width)
    return tasks


def probe_cache(root: Path, video_id: str) -> Path:
    """Where the probe of ``video_id`` is cached: ``filter_probes/<bucket>/<id>.json``."""
    return fanned_path(root / PROBE_DIR, video_id, f"{video_id}.json")


def filter_videos(cfg: FilterSettings, root: Path) -> dict[str, Any]:
    """Write ``video_filter.parquet`` (``common.manifests.video_filter``); return counts per status."""
    videos = load_videos(root)
    tasks = probe_tasks(videos, root, cfg)
    probes = dict(zip(tasks, probe_all(list(tasks.values()), cfg), strict=True))
    rows = filter_rows(videos, probes, cfg)
    return write_rows(root, rows)


def write_rows(root: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``video_filter.parquet`` from ``filter_rows``; the counts per status."""
    import pandas as pd

    video_filter.write(root, pd.DataFrame(rows, columns=video_filter.COLUMNS))
    statuses = Counter(row["status"] for row in rows)
    log.info("filter: kept %d of %d videos; %s", statuses.get("ok", 0), len(rows), dict(statuses))
    return {
        "videos": len(rows),
        "kept": statuses.get("ok", 0),
        "dropped": {s: statuses[s] for s in sorted(statuses) if s != "ok"},
    }

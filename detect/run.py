"""``python pipeline.py detect``: persons on every 100th frame of each kept video (§3.1).

For each kept video of ``video_filter.parquet`` without a ``detections/<bucket>/<video_id>.parquet`` yet:
sample frames (decoded in worker processes), detect persons in batches that span frames and
videos, estimate keypoints for the boxes that pass the box rules, apply the validity rules
(``detect.person_rules``), and write the video's boxes atomically. ``detections.parquet`` then
lists every kept video with its counts and status. A rerun skips finished videos.

``--engine ray`` runs the same per-video work (``detect_videos``) on a pool of Ray actors that
each hold the models (``detect.on_ray``); the files it writes are the same.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from common.manifests import boxes, detections
from detect.batch_runner import BatchRunner, detect_videos
from detect.inputs import finished_summary, kept_videos
from detect.models import build_detector, build_pose, rules_for, track_settings
from detect.on_ray import detect_on_ray
from detect.sampling import VideoJob, sample_indices
from detect.settings import DetectSettings
from detect.track_windows import window_frames

log = logging.getLogger(__name__)


def detect_locally(
    cfg: DetectSettings, jobs: list[VideoJob], root: Path
) -> tuple[dict[str, dict[str, Any]], int]:
    """Detect ``jobs`` on this machine; per-video results and frames processed."""
    tracks = track_settings(cfg)
    runner = BatchRunner(build_detector(cfg), build_pose(cfg), rules_for(cfg), root, cfg.batch_size, tracks)
    if tracks is None:
        total = sum(len(sample_indices(j.n_frames, cfg.frame_step)) for j in jobs)
    else:
        total = sum(len(window_frames(j.n_frames, cfg.frame_step, tracks)) for j in jobs)
    with tqdm(total=total, desc="detect: frames", unit="frame", disable=None) as bar:
        frames = detect_videos(runner, jobs, cfg.frame_step, cfg.workers, bar.update)
    return runner.results, frames


def summary_table(videos, results: dict[str, dict[str, Any]]) -> tuple[pd.DataFrame, Counter[str]]:
    """``detections.parquet``'s rows, one per kept video in ``videos``' order, from each video's
    result (``read_video_summary`` of its file, or an error row); and the rule reasons counted."""
    rows = []
    reasons: Counter[str] = Counter()
    for vid in videos["video_id"].astype(str):
        result = results.get(vid, {})
        rows.append({"video_id": vid, "boxes": 0, "valid_boxes": 0, **result})
        reasons.update(result.get("reasons", {}))
    return pd.DataFrame(rows, columns=detections.COLUMNS), reasons


RUNNERS: dict[tuple[DetectSettings, Path], BatchRunner] = {}  # detect_video's models, per process


def detect_video(cfg: DetectSettings, root: Path, job: VideoJob) -> dict[str, Any]:
    """One video's detect, as the streaming build runs it (one video per worker task): its file
    written as ``detect`` writes it, and its result. A video whose file exists is not redone.

    The models are built once per process and settings, then reused by its later videos; frames
    are decoded in this process.
    """
    path = boxes.path_of(root, job.video_id)
    if path.is_file():
        return finished_summary(path)
    runner = RUNNERS.get((cfg, root))
    if runner is None:
        RUNNERS.clear()
        detector, pose, rules, tracks = (
            build_detector(cfg),
            build_pose(cfg),
            rules_for(cfg),
            track_settings(cfg),
        )
        runner = RUNNERS[(cfg, root)] = BatchRunner(detector, pose, rules, root, cfg.batch_size, tracks)
    detect_videos(runner, [job], cfg.frame_step, 0)
    return runner.results.pop(job.video_id)


def detect(cfg: DetectSettings, root: Path) -> dict[str, Any]:
    """Detect persons on the sampled frames of every kept video; return counts."""
    videos = kept_videos(root)
    root = root.resolve()  # workers (Ray actors on other nodes included) get absolute paths
    jobs = []
    summaries: dict[str, dict[str, Any]] = {}  # per video with a file: read_video_summary
    for v in videos.itertuples(index=False):
        vid = str(v.video_id)
        path = boxes.path_of(root, vid)
        if path.is_file():
            summaries[vid] = finished_summary(path)  # checked before any work
        else:
            jobs.append(VideoJob(vid, str(root / str(v.path)), int(v.n_frames)))
    done = len(summaries)
    log.info("detect: %d kept videos, %d already done, %d to do", len(videos), done, len(jobs))
    start = time.perf_counter()
    results_now: dict[str, dict[str, Any]] = {}
    ray_actors: dict[str, float] = {}
    frames_now = 0
    if jobs and cfg.engine == "ray":
        results_now, frames_now, ray_actors = detect_on_ray(cfg, jobs, root)
    elif jobs:
        results_now, frames_now = detect_locally(cfg, jobs, root)
    seconds = time.perf_counter() - start
    table, reasons = summary_table(videos, {**summaries, **results_now})
    detections.write(root, table)
    return {
        "videos": len(videos),
        "skipped_done": done,
        "failed": int((table["status"] == "error").sum()),
        "frames_sampled": int(table["frames_sampled"].fillna(0).sum()),
        "boxes": int(table["boxes"].fillna(0).sum()),
        "valid_boxes": int(table["valid_boxes"].fillna(0).sum()),
        "reasons": dict(sorted(reasons.items())),
        "detector": cfg.detector,
        "keypoint_model": cfg.keypoints if cfg.keypoints != "hrnet" else "hrnet_w32",
        "keypoint_rules": "skipped (--keypoints none)" if cfg.keypoints == "none" else "applied",
        "frames_per_s": round(frames_now / seconds, 2) if frames_now else 0.0,
        **({"ray_actors": ray_actors} if ray_actors else {}),
    }

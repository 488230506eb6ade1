"""``python pipeline.py detect``: persons on every 100th frame of each kept video (§3.1).

For each kept video of ``video_filter.parquet`` without a ``detections/<video_id>.parquet`` yet:
sample frames (decoded in worker processes), detect persons in batches that span frames and
videos, estimate keypoints for the boxes that pass the box rules, apply the validity rules
(``filter.person_rules``), and write the video's boxes atomically. ``detections.parquet`` then
lists every kept video with its counts and status. A rerun skips finished videos.

``--engine ray`` runs the same per-video work (``detect_videos``) on a pool of Ray actors that
each hold the models (``detect.on_ray``); the files it writes are the same.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UsageError
from detect.boxes import BoxRows, read_video_summary, write_video_boxes
from detect.inputs import finished_summary, kept_videos
from detect.settings import DetectSettings
from filter.person_rules import PersonRules

log = logging.getLogger(__name__)
SUMMARY_COLUMNS = ["video_id", "frames_sampled", "boxes", "valid_boxes", "status", "reason"]


def rules_for(cfg: DetectSettings) -> PersonRules:
    """The validity thresholds; the score threshold depends on the detector (YOLO probability or
    HOG SVM margin)."""
    return PersonRules(
        min_score=cfg.min_score if cfg.detector == "yolo" else cfg.hog_min_score,
        min_width=cfg.min_width,
        min_aspect=cfg.min_aspect,
        max_aspect=cfg.max_aspect,
        keypoint_threshold=cfg.keypoint_threshold,
    )


def build_detector(cfg: DetectSettings):
    if cfg.detector == "hog":
        from detect.hog import HogDetector

        return HogDetector()
    from detect.yolo import YoloDetector

    return YoloDetector(cfg.detector_weights, cfg.device, cfg.record_score)


def build_pose(cfg: DetectSettings):
    """The keypoint adapter, or None for ``--keypoints none`` (said loudly: rules are skipped)."""
    from detect.yolo import resolve_device

    if cfg.keypoints == "none":
        log.warning("detect: --keypoints none: the head / upper-body / lower-body rules are skipped")
        return None
    if cfg.keypoints == "mmpose":
        from detect.pose import MMPoseKeypoints

        return MMPoseKeypoints(cfg.pose_weights, resolve_device(cfg.device))
    from detect.pose import HRNetKeypoints

    return HRNetKeypoints(
        cfg.pose_weights, resolve_device(cfg.device), cfg.pose_batch_size, cfg.pose_flip_test
    )


class BatchRunner:
    """Collects sampled frames into batches across videos; runs detector, keypoints and rules."""

    def __init__(self, detector, pose, rules: PersonRules, out_dir: Path, batch_size: int) -> None:
        self.detector, self.pose, self.rules = detector, pose, rules
        self.out_dir, self.batch_size = out_dir, batch_size
        self.keypoint_model = pose.name if pose is not None else "none"
        self.pending: list[tuple[str, int, np.ndarray]] = []
        self.rows: dict[str, BoxRows] = defaultdict(lambda: BoxRows(self.detector.name, self.keypoint_model))
        self.ended: dict[str, tuple[int, int, str]] = {}
        self.results: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> int:
        """Feed one record of ``sampled_frames``; returns frames processed by this call."""
        vid = record["video_id"]
        if record.get("end"):
            self.ended[vid] = (record["frames"], record["expected"], record["error"])
            if not any(p[0] == vid for p in self.pending):
                self.finish_ended()
            return 0
        self.pending.append((vid, record["frame"], record["image"]))
        return self.flush() if len(self.pending) >= self.batch_size else 0

    def flush(self) -> int:
        """Run the pending batch; write the videos whose frames are now all done."""
        batch, self.pending = self.pending, []
        if batch:
            boxes = self.detector([image for _, _, image in batch])
            keypoints = self.keypoints(batch, boxes)
            for (vid, frame, _), frame_boxes, frame_kps in zip(batch, boxes, keypoints, strict=True):
                self.rows[vid].add_frame(frame, frame_boxes, frame_kps, self.rules)
        self.finish_ended()
        return len(batch)

    def keypoints(self, batch, boxes: list[np.ndarray]) -> list[list[np.ndarray | None]]:
        """Per frame, per box: keypoints for boxes passing the box rules, None for the others."""
        from filter.person_rules import box_reason

        out: list[list[np.ndarray | None]] = [[None] * len(b) for b in boxes]
        if self.pose is None:
            return out
        chosen = [[i for i, b in enumerate(fb) if box_reason(*b[:5], self.rules) == "ok"] for fb in boxes]
        results = self.pose(
            [(image, fb[idx]) for (_, _, image), fb, idx in zip(batch, boxes, chosen, strict=True)]
        )
        for frame_out, idx, kps in zip(out, chosen, results, strict=True):
            for i, kp in zip(idx, kps, strict=True):
                frame_out[i] = kp
        return out

    def finish_ended(self) -> None:
        waiting = {p[0] for p in self.pending}
        for vid in [v for v in self.ended if v not in waiting]:
            frames, expected, error = self.ended.pop(vid)
            rows = self.rows.pop(vid, None) or BoxRows(self.detector.name, self.keypoint_model)
            if error:
                log.warning("detect: %s failed: %s", vid, error)
                self.results[vid] = {"frames_sampled": frames, "status": "error", "reason": error}
                continue
            note = f"decoded {frames} of {expected} sampled frames" if frames < expected else ""
            if note:
                log.warning("detect: %s: %s", vid, note)
            write_video_boxes(self.out_dir / f"{vid}.parquet", vid, rows, frames, note)
            self.results[vid] = read_video_summary(self.out_dir / f"{vid}.parquet")


def detect_videos(
    runner: BatchRunner, jobs: list, step: int, workers: int, progress: Callable[[int], Any] | None = None
) -> int:
    """The per-video work of both engines: decode the sampled frames of ``jobs`` (``VideoJob``s)
    in ``workers`` processes and run them through ``runner``, whose batches span videos; each
    video's file is written as soon as its last frame is done. Returns the frames processed."""
    from detect.sampling import sampled_frames

    frames = 0
    for record in sampled_frames(jobs, step, workers):
        frames += (n := runner.add(record))
        if progress is not None:
            progress(n)
    frames += (n := runner.flush())
    if progress is not None:
        progress(n)
    return frames


def detect(cfg: DetectSettings, root: Path) -> dict[str, Any]:
    """Detect persons on the sampled frames of every kept video; return counts."""
    import pandas as pd
    from tqdm import tqdm

    from common.atomic import write_parquet
    from detect.sampling import VideoJob, sample_indices

    videos = kept_videos(root)
    root = root.resolve()  # workers (Ray actors on other nodes included) get absolute paths
    out_dir = root / "detections"
    jobs = []
    summaries: dict[str, dict[str, Any]] = {}  # per video with a file: read_video_summary
    for v in videos.itertuples(index=False):
        vid = str(v.video_id)
        if "/" in vid or vid.startswith("."):
            raise UsageError(f"video id {vid!r} cannot name a file under detections/")
        if (out_dir / f"{vid}.parquet").is_file():
            summaries[vid] = finished_summary(out_dir / f"{vid}.parquet")  # checked before any work
        else:
            jobs.append(VideoJob(vid, str(root / str(v.path)), int(v.n_frames)))
    done = len(summaries)
    log.info("detect: %d kept videos, %d already done, %d to do", len(videos), done, len(jobs))
    start = time.perf_counter()
    results_now: dict[str, dict[str, Any]] = {}
    ray_actors: dict[str, float] = {}
    frames_now = 0
    if jobs and cfg.engine == "ray":
        from detect.on_ray import detect_on_ray

        results_now, frames_now, ray_actors = detect_on_ray(cfg, jobs, out_dir)
    elif jobs:
        runner = BatchRunner(build_detector(cfg), build_pose(cfg), rules_for(cfg), out_dir, cfg.batch_size)
        total = sum(len(sample_indices(j.n_frames, cfg.frame_step)) for j in jobs)
        with tqdm(total=total, desc="detect: frames", unit="frame", disable=None) as bar:
            frames_now = detect_videos(runner, jobs, cfg.frame_step, cfg.workers, bar.update)
        results_now = runner.results
    seconds = time.perf_counter() - start
    summary_rows = []
    reasons: Counter[str] = Counter()
    for vid in videos["video_id"].astype(str):
        path = out_dir / f"{vid}.parquet"
        if vid not in summaries and path.is_file():  # written by this run
            summaries[vid] = read_video_summary(path)
        if vid in summaries:
            summary_rows.append({"video_id": vid, **summaries[vid]})
            reasons.update(summaries[vid]["reasons"])
        else:
            summary_rows.append({"video_id": vid, "boxes": 0, "valid_boxes": 0, **results_now.get(vid, {})})
    table = pd.DataFrame(summary_rows, columns=SUMMARY_COLUMNS)
    write_parquet(root / "detections.parquet", table)
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

"""Batches of sampled frames across videos through detector, keypoints and rules (both engines).

``detect_videos`` is the per-video work of the local pool and of each Ray actor: frames are
decoded in worker processes, batched across videos, and each video's file is written as soon
as its last frame is done.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from detect.boxes import BoxRows, read_video_summary, write_video_boxes
from detect.person_rules import PersonRules, box_reason
from detect.sampling import sampled_frames
from detect.track_windows import TrackSettings, WindowBuffer, add_window, window_records

log = logging.getLogger(__name__)


class BatchRunner:
    """Collects sampled frames into batches across videos; runs detector, keypoints and rules."""

    def __init__(
        self,
        detector,
        pose,
        rules: PersonRules,
        out_dir: Path,
        batch_size: int,
        tracks: TrackSettings | None = None,
    ) -> None:
        self.detector, self.pose, self.rules, self.tracks = detector, pose, rules, tracks
        self.windows: WindowBuffer | None = None  # with tracks: set by detect_videos
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
            if self.windows is not None and self.tracks is not None:  # --tracks: whole windows at a time
                for (vid, frame, image), fb in zip(batch, boxes, strict=True):
                    for win in self.windows.add(vid, frame, image, fb):
                        add_window(self, vid, win, self.tracks)
            else:
                keypoints, present = self.keypoints(batch, boxes)
                for (vid, frame, _), fb, kps, pp in zip(batch, boxes, keypoints, present, strict=True):
                    self.rows[vid].add_frame(frame, fb, kps, self.rules, pp)
        self.finish_ended()
        return len(batch)

    def keypoints(self, batch, boxes: list[np.ndarray]) -> tuple[list[list], list[list]]:
        """Per frame, per box: keypoints for boxes passing the box rules, None for the others; and
        the model's pose-present score where it gives one (BlazePose), else None."""
        out: list[list[np.ndarray | None]] = [[None] * len(b) for b in boxes]
        present: list[list[float | None]] = [[None] * len(b) for b in boxes]
        if self.pose is None:
            return out, present
        chosen = [[i for i, b in enumerate(fb) if box_reason(*b[:5], self.rules) == "ok"] for fb in boxes]
        results = self.pose(
            [(image, fb[idx]) for (_, _, image), fb, idx in zip(batch, boxes, chosen, strict=True)]
        )
        scores = getattr(self.pose, "last_pose_present", None) or [[None] * len(idx) for idx in chosen]
        for frame_out, frame_present, idx, kps, sc in zip(out, present, chosen, results, scores, strict=True):
            for i, kp, p in zip(idx, kps, sc, strict=True):
                frame_out[i], frame_present[i] = kp, None if p is None else float(p)
        return out, present

    def finish_ended(self) -> None:
        waiting = {p[0] for p in self.pending}
        for vid in [v for v in self.ended if v not in waiting]:
            frames, expected, error = self.ended.pop(vid)
            last = self.windows.close(vid) if self.windows is not None else None
            if last is not None and self.tracks is not None and not error:
                add_window(self, vid, last, self.tracks)
            rows = self.rows.pop(vid, None) or BoxRows(self.detector.name, self.keypoint_model)
            if error:
                log.warning("detect: %s failed: %s", vid, error)
                self.results[vid] = {"frames_sampled": frames, "status": "error", "reason": error}
                continue
            note = f"decoded {frames} of {expected} sampled frames" if frames < expected else ""
            if note:
                log.warning("detect: %s: %s", vid, note)
            threshold = self.rules.keypoint_threshold if self.pose is not None else None
            write_video_boxes(self.out_dir / f"{vid}.parquet", vid, rows, frames, note, threshold)
            self.results[vid] = read_video_summary(self.out_dir / f"{vid}.parquet")


def detect_videos(
    runner: BatchRunner, jobs: list, step: int, workers: int, progress: Callable[[int], Any] | None = None
) -> int:
    """The per-video work of both engines: decode the sampled frames of ``jobs`` (``VideoJob``s)
    in ``workers`` processes and run them through ``runner``, whose batches span videos; each
    video's file is written as soon as its last frame is done. Returns the frames processed."""
    frames = 0
    if runner.tracks is None:
        records = sampled_frames(jobs, step, workers)
    else:
        runner.windows = WindowBuffer(step)
        records = window_records(jobs, step, runner.tracks, workers)
    for record in records:
        frames += (n := runner.add(record))
        if progress is not None:
            progress(n)
    frames += (n := runner.flush())
    if progress is not None:
        progress(n)
    return frames

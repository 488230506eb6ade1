"""Batches of sampled frames across videos through detector, keypoints and rules (both engines).

``detect_videos`` is the per-video work of the local pool and of each Ray actor: frames are
decoded in worker processes, batched across videos, and each video's file is written as soon
as its last frame is done. A decoding process that dies costs only the video it was decoding.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from common.local_pool import DIED_ALONE
from common.manifests import boxes as box_file
from detect.boxes import BoxRows, read_video_summary, write_video_boxes
from detect.person_rules import PersonRules, box_reason
from detect.sampling import Decoders, VideoJob, sampled_frames, worker_death
from detect.settings import TrackSettings
from detect.track_windows import WindowBuffer, add_window, window_records

log = logging.getLogger(__name__)


class BatchRunner:
    """Collects sampled frames into batches across videos; runs detector, keypoints and rules."""

    def __init__(
        self,
        detector,
        pose,
        rules: PersonRules,
        root: Path,
        batch_size: int,
        tracks: TrackSettings | None = None,
    ) -> None:
        self.detector, self.pose, self.rules, self.tracks = detector, pose, rules, tracks
        self.windows: WindowBuffer | None = None  # with tracks: set by decoders()
        self.root, self.batch_size = root, batch_size  # the workspace: files at box_file.path_of
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
            path = box_file.path_of(self.root, vid)
            write_video_boxes(path, vid, rows, frames, note, threshold)
            self.results[vid] = read_video_summary(path)

    def decoders(self, jobs: list[VideoJob], step: int, processes: int) -> Decoders:
        """The records of ``jobs`` this runner takes: sampled frames, or whole windows with tracks."""
        if self.tracks is None:
            return sampled_frames(jobs, step, processes)
        self.windows = WindowBuffer(step)
        return window_records(jobs, step, self.tracks, processes)

    def after_death(
        self, part: list[VideoJob], in_flight: list[VideoJob], death: str, workers: int
    ) -> list[tuple[list[VideoJob], int]]:
        """After a decoding process of ``part`` died (``death``, DataLoader's words): drop what is
        not written, and return what to decode again as (jobs, processes), the last first."""
        self.pending, self.ended, self.windows = [], {}, None
        self.rows.clear()
        unfinished = []
        for job in part:
            path = box_file.path_of(self.root, job.video_id)
            if job.video_id in self.results:
                continue
            if path.is_file():  # written, but the error came before its result was noted
                self.results[job.video_id] = read_video_summary(path)
            else:
                unfinished.append(job)
        if len(part) == 1 and unfinished:  # decoded alone: this video kills its process
            # the row says what every engine says; DataLoader's words for how (a signal, or only
            # "exited unexpectedly", depending on which check saw it first) go to the log
            log.warning("detect: %s failed: %s (%s)", part[0].video_id, DIED_ALONE, death)
            self.results[part[0].video_id] = {"frames_sampled": 0, "status": "error", "reason": DIED_ALONE}
            return []
        if not unfinished:
            return []
        suspects = [job for job in in_flight if job in unfinished] or unfinished
        log.warning(
            "detect: a decoding process died (%s); decoding %s again one at a time",
            death,
            ", ".join(job.video_id for job in suspects),
        )
        rest = [job for job in unfinished if job not in suspects]
        return [(rest, workers)] * bool(rest) + [([job], 1) for job in reversed(suspects)]


def detect_videos(
    runner: BatchRunner, jobs: list, step: int, workers: int, progress: Callable[[int], Any] | None = None
) -> int:
    """The per-video work of both engines: decode the sampled frames of ``jobs`` (``VideoJob``s)
    in ``workers`` processes and run them through ``runner``, whose batches span videos; each
    video's file is written as soon as its last frame is done. Returns the frames processed.

    A decoding process that dies takes no other video with it: what was not written is dropped,
    the videos the processes were decoding are decoded again one per process, the others again
    together, and a video whose own process dies ends as its ``error`` row (``runner.results``).
    """
    frames = 0
    todo: list[tuple[list, int]] = [(list(jobs), workers)]  # (jobs, decoding processes), last first
    while todo:
        part, processes = todo.pop()
        decoders = runner.decoders(part, step, processes)
        try:
            frames += feed(runner, decoders, progress)
            continue
        except RuntimeError as e:
            death = worker_death(e)
            if death is None:
                raise
        # out of the except block the error and its frames are gone, and with them the loader's
        # iterator, which stops the other processes: none is left to die while we clean up
        todo.extend(runner.after_death(part, decoders.in_flight(), death, workers))
    return frames


def feed(
    runner: BatchRunner, records: Iterable[dict[str, Any]], progress: Callable[[int], Any] | None
) -> int:
    """Every record through ``runner``, then its last batch; the frames processed."""
    frames = 0
    for record in records:
        frames += (n := runner.add(record))
        if progress is not None:
            progress(n)
    frames += (n := runner.flush())
    if progress is not None:
        progress(n)
    return frames

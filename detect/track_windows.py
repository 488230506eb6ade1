"""``detect --tracks``: the frames around each sampled frame, decoded, buffered and turned into rows.

Frames: for each sampled frame ``a`` (0, frame_step, ...), the frames ``a + k * step`` within
``a - window .. a + window`` (``window < frame_step / 2``, so every frame belongs to the one
sampled frame nearest to it). They are decoded in worker processes as ``detect.sampling`` does;
each video's ``end`` record counts the sampled frames only (``frames_sampled`` keeps its meaning).

Rows (``detections/<video_id>.parquet``): every box of the sampled frame, exactly as without
``--tracks`` plus its ``tracklet``, and the crops :func:`detect.tracks.pick_crops` keeps on the
other frames (each passed every rule), with their tracklet. Boxes keep their index in their frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detect.person_rules import person_reason
from detect.sampling import Decoders, SampledFrames, sample_indices
from detect.settings import TrackSettings
from detect.tracks import Window, link, pick_crops


def window_frames(n_frames: int, frame_step: int, track: TrackSettings) -> list[int]:
    """The frames decoded for a video of ``n_frames``: each sampled frame and its window."""
    reach = track.window // track.step * track.step
    frames = (
        a + k for a in sample_indices(n_frames, frame_step) for k in range(-reach, reach + 1, track.step)
    )
    return sorted({f for f in frames if 0 <= f < n_frames})


def anchor_of(frame: int, frame_step: int) -> int:
    """The sampled frame whose window holds ``frame`` (the nearest one)."""
    return (frame + frame_step // 2) // frame_step * frame_step


class WindowFrames(SampledFrames):
    """``detect.sampling.SampledFrames`` over :func:`window_frames`; ``frames`` counts sampled ones."""

    def __init__(self, jobs: list, frame_step: int, track: TrackSettings) -> None:
        super().__init__(jobs, frame_step)
        self.track = track

    def wanted(self, job) -> list[int]:
        return window_frames(job.n_frames, self.step, self.track)

    def sampled(self, index: int) -> bool:
        return index % self.step == 0


def window_records(jobs: list, frame_step: int, track: TrackSettings, workers: int) -> Decoders:
    """Records of :class:`WindowFrames`, decoded by ``workers`` processes (0: in this one)."""
    return Decoders(WindowFrames(jobs, frame_step, track), workers)


@dataclass
class OpenWindow:
    """The frames of one window received so far (in order), with their images and boxes."""

    anchor: int
    frames: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)


class WindowBuffer:
    """Per video, the window being filled; ``add`` returns the windows it closes."""

    def __init__(self, frame_step: int) -> None:
        self.frame_step = frame_step
        self.open: dict[str, OpenWindow] = {}

    def add(self, vid: str, frame: int, image: np.ndarray, boxes: np.ndarray) -> list[OpenWindow]:
        anchor = anchor_of(frame, self.frame_step)
        closed = []
        if vid in self.open and self.open[vid].anchor != anchor:
            closed.append(self.open.pop(vid))
        win = self.open.setdefault(vid, OpenWindow(anchor))
        win.frames.append(frame)
        win.images.append(image)
        win.boxes.append(boxes)
        return closed

    def close(self, vid: str) -> OpenWindow | None:
        return self.open.pop(vid, None)


def add_window(runner, vid: str, win: OpenWindow, track: TrackSettings) -> None:
    """Link the window's boxes into tracklets, keep their crops and add the rows to ``runner``
    (a ``detect.batch_runner.BatchRunner``: its keypoint model, rules and rows)."""
    if win.anchor not in win.frames:  # the sampled frame itself could not be decoded
        return
    members = link(Window(win.frames, win.boxes, win.anchor), runner.detector.name)
    owner = {(f, b): a for a, frames in members.items() for f, b in frames.items()}
    wanted = [
        list(range(len(fb))) if frame == win.anchor else sorted(b for (f, b) in owner if f == frame)
        for frame, fb in zip(win.frames, win.boxes, strict=True)
    ]
    batch = [(vid, frame, image) for frame, image in zip(win.frames, win.images, strict=True)]
    kps, present = runner.keypoints(batch, [fb[idx] for fb, idx in zip(win.boxes, wanted, strict=True)])
    full_kps = [[None] * len(fb) for fb in win.boxes]
    full_present = [[None] * len(fb) for fb in win.boxes]
    for pos, idx in enumerate(wanted):
        for j, i in enumerate(idx):
            full_kps[pos][i], full_present[pos][i] = kps[pos][j], present[pos][j]
    keep = _kept(win, members, full_kps, runner.rules, track)
    for pos, (frame, fb) in enumerate(zip(win.frames, win.boxes, strict=True)):
        ids = [None] * len(fb)
        for (f, b), a in owner.items():
            if f == frame:
                ids[b] = f"{vid}_t{win.anchor}_{a}"
        only = None if frame == win.anchor else sorted(b for (f, b) in keep if f == frame)
        if only is None or only:
            runner.rows[vid].add_frame(frame, fb, full_kps[pos], runner.rules, full_present[pos], ids, only)


def _kept(win: OpenWindow, members: dict[int, dict[int, int]], kps, rules, track: TrackSettings) -> set:
    """(frame, box) of the crops kept besides the anchor boxes: per tracklet, :func:`pick_crops`
    over its boxes that pass every rule."""
    position = {frame: p for p, frame in enumerate(win.frames)}
    keep = set()
    for frames in members.values():
        passing = []
        for frame, box in frames.items():
            if frame == win.anchor:
                continue
            x1, y1, x2, y2, score = (float(v) for v in win.boxes[position[frame]][box][:5])
            if person_reason(x1, y1, x2, y2, score, kps[position[frame]][box], rules) == "ok":
                passing.append(frame)
        chosen = pick_crops(win.anchor, passing, track.max_crops, track.min_gap)
        keep.update((frame, frames[frame]) for frame in chosen)
    return keep

"""22 street clips for the streaming build's tests and benchmark, cut from the sample footage.

Each clip is ``FRAMES`` consecutive frames of one of the sample videos (``../shared/data/videos``)
at 640x360, every other one mirrored, encoded with x264: real footage in which the HOG detector
finds people, long enough for filter (>= 100 frames) and far enough apart that filter's static and
near-duplicate rules keep every one (checked by the tests that use them).
"""

from __future__ import annotations

from pathlib import Path

from bench.scale_parts.video_clips import encode
from common.media.frames import read_frames

FRAMES = 110
SIZE = (640, 360)
FPS = 25
CRF = 28
# (source, first frame, mirrored): windows that filter keeps, 20 in all
WINDOWS = [
    *[
        ("one-by-one-person-detection.mp4", s, m)
        for s in (0, 230, 460, 690, 920, 1150)
        for m in (False, True)
    ],
    *[("street-crossing.mp4", s, m) for s in (0, 280, 550) for m in (False, True)],
    *[("concourse-walkers.mp4", s, m) for s in (0, 220) for m in (False, True)],
]


def make_clips(folder: Path, data: Path, count: int = len(WINDOWS)) -> list[Path]:
    """The clips of the first ``count`` ``WINDOWS`` under ``folder`` (made once: reused when
    present), in order."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    windows = WINDOWS[:count]
    paths = [folder / f"{Path(s).stem}-{start:04d}{'-m' if m else ''}.mp4" for s, start, m in windows]
    if all(p.is_file() for p in paths):
        return paths
    for source in dict.fromkeys(s for s, _, _ in windows):
        wanted = [(start, m, p) for (s, start, m), p in zip(windows, paths, strict=True) if s == source]
        needed = sorted({start + i for start, _, _ in wanted for i in range(FRAMES)})
        frames = {
            i: cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA)
            for i, f in read_frames(data / source, needed)
        }
        for start, mirrored, path in wanted:
            clip = [frames[start + i] for i in range(FRAMES)]
            encode([f[:, ::-1].copy() for f in clip] if mirrored else clip, path, SIZE, FPS, CRF)
    return paths

"""Measure one video for the filters: frame count, size, probe-frame differences, hashes, VR metadata.

Only measurements live here; the thresholds are applied by ``filter.videos``, so a changed
tolerance never needs a re-probe. A probe is cached as JSON beside the workspace (keyed by the
file's size and mtime) so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.atomic import write_json
from common.media.frame_index import index_video
from common.media.frames import count_frames, read_frames
from filter.phash import phash
from filter.vr import metadata_signal

PROBE_VERSION = 1


@dataclass
class Probe:
    """What the filters need to know about one video file."""

    n_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    codec: str = ""
    error: str = ""  # non-empty: the video is unreadable, and why
    positions: list[int] = field(default_factory=list)  # evenly spaced probe frames
    static_diff: float = 0.0  # largest mean |difference| (0-255) of a shrunk probe frame vs the first
    hashes: list[str] = field(default_factory=list)  # pHash of each probe frame, hex
    vr_metadata: str = ""  # "spherical" / "stereo3d" side data, "" when none


def probe_positions(n_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame numbers from the first to the last frame."""
    return sorted(set(np.linspace(0, max(n_frames - 1, 0), count).round().astype(int).tolist()))


def shrink(frame: np.ndarray, width: int) -> np.ndarray:
    """``frame`` resized to ``width`` pixels wide (area averaging, aspect kept)."""
    import cv2

    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference (0-255) of two equally sized uint8 frames."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def static_difference(frames: list[np.ndarray], width: int) -> float:
    """Largest mean |difference| between the first frame and each other, all shrunk to ``width``.

    Shrinking averages away compression noise (a still re-encoded by a fast encoder differs from
    itself by ~1.3 at full size, <= 0.7 at 64 px wide) while motion survives it.
    """
    small = [shrink(f, width) for f in frames]
    return max((mean_abs_diff(small[0], f) for f in small[1:]), default=0.0)


def _stream_facts(path: Path) -> tuple[int, float, str]:
    """(frames, fps, codec) from the packet index, or from OpenCV when PyAV cannot index the file."""
    try:
        index = index_video(path)
    except OSError:
        import cv2

        cap = cv2.VideoCapture(str(path))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
        cap.release()
        return count_frames(path), fps, "opencv"
    if index.truncated:
        raise OSError(f"truncated: {len(index.pts)} of {index.declared_frames} frames in the file")
    return count_frames(path, index), index.fps, index.codec


def probe_video(path: str | Path, count: int, width: int) -> Probe:
    """Probe ``path`` with ``count`` evenly spaced frames (compared at ``width`` px wide); failures
    land in ``Probe.error``."""
    path = Path(path)
    if not path.is_file():
        return Probe(error=f"file not found: {path}")
    try:
        n_frames, fps, codec = _stream_facts(path)
        if n_frames == 0:
            return Probe(error="no decodable frames")
        positions = probe_positions(n_frames, count)
        frames = dict(read_frames(path, positions))
    except OSError as e:
        return Probe(error=str(e))
    if len(frames) < len(positions):
        missing = [p for p in positions if p not in frames]
        return Probe(n_frames=n_frames, error=f"cannot decode frame(s) {missing} of {n_frames}")
    first = frames[positions[0]]
    try:
        vr = metadata_signal(path) or ""
    except OSError:
        vr = ""  # OpenCV could read it, PyAV cannot: no side data to look at
    return Probe(
        n_frames=n_frames,
        fps=fps,
        width=int(first.shape[1]),
        height=int(first.shape[0]),
        codec=codec,
        positions=positions,
        static_diff=static_difference([frames[p] for p in positions], width),
        hashes=[f"{phash(frames[p]):016x}" for p in positions],
        vr_metadata=vr,
    )


def cached_probe(path: str | Path, count: int, width: int, cache: Path) -> Probe:
    """``probe_video`` unless ``cache`` holds a probe of the same file (size, mtime) and settings."""
    path = Path(path)
    try:
        stat = os.stat(path)
        key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "count": count, "width": width}
        key["version"] = PROBE_VERSION
    except OSError:
        key = None
    if key is not None and cache.is_file():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == key:
                return Probe(**stored["probe"])
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache entry: probe again
    probe = probe_video(path, count, width)
    if key is not None:
        write_json(cache, {"key": key, "probe": asdict(probe)})
    return probe

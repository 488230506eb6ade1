"""Independent references for tests: frames read the plain way, not through the project's reader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def opencv_frames(path: Path) -> list[np.ndarray]:
    """Every frame of ``path``, read one after another with OpenCV."""
    cap, frames = cv2.VideoCapture(str(path)), []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return frames
            frames.append(frame)
    finally:
        cap.release()


def reference_frames(video: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    """The ``wanted`` frames (0-based), read one after another with OpenCV up to the last one."""
    cap = cv2.VideoCapture(str(video))
    frames, index = {}, 0
    try:
        while index <= max(wanted):
            ok, frame = cap.read()
            if not ok:
                break
            if index in wanted:
                frames[index] = frame
            index += 1
    finally:
        cap.release()
    return frames


def readable_frames(path: Path) -> int:
    """Frames OpenCV's read-every-frame loop returns (0 when the file does not open)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n

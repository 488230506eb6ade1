"""OpenCV's built-in HOG + linear SVM people detector (Dalal & Triggs), offline and weight-free.

Its score is the SVM margin of the window (not a probability): on sampled frames of the sample
clips, boxes above 2.0 were all whole persons, 1.0-2.0 mostly persons or large parts of one,
below 1.0 mostly background or fragments (docs/detect.md); ``hog_min_score`` defaults to 1.0.

A frame smaller than the 64x128 detection window gets no boxes without calling OpenCV: there
``detectMultiScale`` is undefined behaviour (measured on OpenCV 4.13, one process per size: 2x2,
16x32, 47x128, 63x64 and 100x64 ended in ``double free or corruption`` / SIGSEGV, 32x200 in a
``cv2.error``, 40x300 ran), and it can never return a box smaller than its window anyway.
"""

from __future__ import annotations

import numpy as np

WINDOW = (64, 128)  # (width, height) of OpenCV's default people detector; cv2.HOGDescriptor().winSize
WIN_STRIDE = (8, 8)
PADDING = (8, 8)
SCALE = 1.05  # image pyramid step


class HogDetector:
    """``detector(frames) -> [(N, 5) float32 x1, y1, x2, y2, score]``, boxes in source pixels."""

    name = "hog"

    def __init__(self) -> None:
        import cv2

        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        if tuple(self.hog.winSize) != WINDOW:
            raise RuntimeError(
                f"OpenCV's HOG window is {tuple(self.hog.winSize)}, this module assumes {WINDOW}"
            )

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Boxes of one BGR frame, clipped to it, best score first; none when the frame is smaller
        than the window."""
        height, width = frame.shape[:2]
        if width < WINDOW[0] or height < WINDOW[1]:
            return np.zeros((0, 5), dtype=np.float32)
        rects, weights = self.hog.detectMultiScale(frame, winStride=WIN_STRIDE, padding=PADDING, scale=SCALE)
        if len(rects) == 0:
            return np.zeros((0, 5), dtype=np.float32)
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        boxes = np.stack(
            [
                np.clip(rects[:, 0], 0, width),
                np.clip(rects[:, 1], 0, height),
                np.clip(rects[:, 0] + rects[:, 2], 0, width),
                np.clip(rects[:, 1] + rects[:, 3], 0, height),
                np.asarray(weights, dtype=np.float32).ravel(),
            ],
            axis=1,
        )
        return boxes[np.argsort(-boxes[:, 4], kind="stable")]

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return [self.detect(frame) for frame in frames]

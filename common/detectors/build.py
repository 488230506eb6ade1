"""The one place that turns a detector name and its weights into a detector object."""

from __future__ import annotations

from common.detectors.hog import HogDetector
from common.detectors.yolo import YoloDetector


def build_detector(kind: str, weights: str = "yolov5xu.pt", device: str = "auto", record_score: float = 0.25):
    """``hog`` (OpenCV, weight-free) or ``yolo`` (ultralytics, ``weights`` a name or local .pt)."""
    if kind == "hog":
        return HogDetector()
    if kind == "yolo":
        return YoloDetector(weights, device, record_score)
    raise ValueError(f"unknown detector {kind!r} (hog or yolo)")

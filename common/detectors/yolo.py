"""Person detector adapter over ultralytics YOLO (the paper: YOLOv5 trained on COCO, §3.1).

The default weights ``yolov5xu.pt`` are the largest YOLOv5 that ultralytics serves (downloaded
on first use); ``--detector-weights PATH`` takes a local file; either is read without running code
from it (:mod:`common.detectors.yolo_weights`). Frames go through in one batch, on the GPU when
there is one; only the person class is kept; boxes come back in source pixels with their
confidence, which is a probability: the paper keeps boxes scoring > 0.72.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.detectors.yolo_weights import load_yolo
from common.device import pick_device

IMAGE_SIZE = 640  # ultralytics' letterbox size, the size COCO YOLOv5 models were trained at


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu``; a bare ``cuda`` is ``cuda:0``."""
    return str(pick_device(device, 0))


class YoloDetector:
    """``detector(frames) -> [(N, 5) float32 x1, y1, x2, y2, score]``, persons only, best first."""

    def __init__(self, weights: str, device: str = "auto", record_score: float = 0.25) -> None:
        self.model = load_yolo(weights)  # read without running code from the file
        names = self.model.names or {}
        persons = [int(k) for k, v in names.items() if str(v) == "person"]
        self.person = persons[0] if persons else 0  # COCO order: class 0 is person
        self.device = resolve_device(device)
        self.precision = 16 if self.device.startswith("cuda") else 32  # fp16 on the GPU
        self.record_score = record_score
        self.name = f"yolo:{Path(weights).name}"

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Boxes of each frame. Frames are run in groups of one size: ultralytics letterboxes a
        mixed-size batch to a full square but a one-size batch to the smallest stride-aligned
        rectangle, so a frame's boxes would otherwise depend on which videos share its batch."""
        out: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * len(frames)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.shape, []).append(i)
        for idx in groups.values():
            for i, boxes in zip(idx, self.predict([frames[i] for i in idx]), strict=True):
                out[i] = boxes
        return out

    def predict(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """One ultralytics batch: person boxes of each frame, best score first."""
        results = self.model.predict(
            frames,
            classes=[self.person],
            conf=self.record_score,
            imgsz=IMAGE_SIZE,
            device=self.device,
            quantize=self.precision,
            batch=len(frames),
            verbose=False,
        )
        out = []
        for r in results:
            xyxy = r.boxes.xyxy.float().cpu().numpy().reshape(-1, 4)
            conf = r.boxes.conf.float().cpu().numpy().reshape(-1, 1)
            boxes = np.concatenate([xyxy, conf], axis=1).astype(np.float32)
            out.append(boxes[np.argsort(-boxes[:, 4], kind="stable")])
        return out

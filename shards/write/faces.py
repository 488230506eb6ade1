"""Face blurring of person crops before they are encoded (``--blur-faces``, issue 26).

Three sources find the faces of a crop:

- **BlazeFace** full range (MediaPipe, ``face_detection_full_range_sparse.tflite``, on LiteRT):
  run on the crop's top square (its whole width, from its top edge; a standing person's head is
  there), letterboxed to 192x192, RGB in [-1, 1]. Each of its 2,304 anchors (a 48x48 grid,
  stride 4) gives a box (centre = anchor + (dx, dy) / 192, size = (w, h) / 192) and a logit;
  boxes scoring ``min_score`` or more are kept, overlapping ones suppressed (IoU > 0.3).
- **Head keypoints** where detect stored them (COCO nose, eyes, ears; crops cut from
  detections): a square around the visible ones, at least ``HEAD_FRACTION`` of the crop's height.
- **BlazePose** (``pose_landmark_full.tflite``, detect's offline keypoint model) on a crop that
  carries no keypoints (imported crops, the release's boxes): the same square around its head
  keypoints whose confidence exceeds ``POSE_THRESHOLD``. BlazeFace alone misses most faces under
  ~15 px wide, which Re-ID crops are full of (README, "Face blurring"); the pose model finds the
  head of the crop's person from the whole body.

A face region is the face box enlarged ``ENLARGE`` times around its centre (BlazeFace's box holds
eyes, nose and mouth, not the hair, ears or chin line), then Gaussian-blurred with sigma a quarter
of its side. What is left has at most about 2 cycles per face width; people recognise faces from
the band near 8-16 cycles per face width and fail below about 4 (Costen et al. 1996, Näsänen
1999), so a blurred face keeps its place and skin tone but not who it is. Pixels outside the
regions are untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.data import data_root
from common.detectors.blazepose import BlazePoseKeypoints
from common.errors import UsageError
from common.settings import check_range, setting

MODEL_NAME = "face_detection_full_range_sparse.tflite"
INPUT_SIDE = 192
GRID = 48  # anchors per side (stride 4)
NMS_IOU = 0.3
MIN_SCORE = 0.15  # BlazeFace score a face needs: low, for recall (README, "Face blurring")
ENLARGE = 1.5
SIGMA_PER_SIDE = 0.25
HEAD_KEYPOINTS = (0, 1, 2, 3, 4)  # COCO: nose, left eye, right eye, left ear, right ear
HEAD_FRACTION = 0.12  # a head is about 1/7.5 of a standing person's height
POSE_MODEL_NAME = "pose_landmark_full.tflite"
POSE_THRESHOLD = 0.5


def default_model(name: str = MODEL_NAME) -> Path:
    """``models/<name>`` in the data folder (common/data.py): BlazeFace's, or BlazePose's."""
    return data_root()[0] / "models" / name


def _anchors() -> np.ndarray:
    cells = (np.arange(GRID, dtype=np.float32) + 0.5) / GRID
    ys, xs = np.meshgrid(cells, cells, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)  # 2304 x 2 (x, y) in [0, 1], row-major


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, highest score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = np.array(order, dtype=int)
        if not len(rest):
            break
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        union = area[i] + area[rest] - inter
        order = [int(j) for j, o in zip(rest, inter / np.maximum(union, 1e-9), strict=True) if o <= iou]
    return keep


class BlazeFace:
    """MediaPipe BlazeFace full range on the LiteRT interpreter, one per worker process."""

    def __init__(self, model: str | Path, min_score: float = MIN_SCORE, threads: int = 1) -> None:
        path = Path(model)
        if path.suffix != ".tflite" or not path.is_file():
            raise UsageError(
                f"--blur-faces: face model {str(path)!r} is not a .tflite file (--face-model PATH)"
            )
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UsageError(f"--blur-faces: cannot load {path}: {str(e).splitlines()[0]}") from None
        inputs = self.interpreter.get_input_details()
        outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        if [list(d["shape"]) for d in inputs] != [[1, INPUT_SIDE, INPUT_SIDE, 3]] or not {
            "Identity",
            "Identity_1",
        } <= outputs.keys():
            raise UsageError(f"--blur-faces: {path} is not BlazeFace's 192x192 full-range model")
        self.input_index = inputs[0]["index"]
        self.regress_index, self.score_index = outputs["Identity"], outputs["Identity_1"]
        self.min_score = min_score
        self.anchors = _anchors()

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """(N, 5) faces of a BGR crop: x1, y1, x2, y2 in crop pixels, score; best first."""
        import cv2

        height, width = bgr.shape[:2]
        side = min(width, height) if height > width else max(width, height)
        window = bgr[:side, :side] if height > width else bgr
        square = np.zeros((side, side, 3), np.uint8)
        square[: window.shape[0], : window.shape[1]] = window[..., :3]
        rgb = cv2.resize(square, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA)[..., ::-1]
        self.interpreter.set_tensor(self.input_index, (rgb.astype(np.float32) / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        regress = self.interpreter.get_tensor(self.regress_index).reshape(-1, 16)
        logits = self.interpreter.get_tensor(self.score_index).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        hits = np.flatnonzero(scores >= self.min_score)
        if not len(hits):
            return np.zeros((0, 5), np.float32)
        centre = self.anchors[hits] + regress[hits, :2] / INPUT_SIDE
        half = regress[hits, 2:4] / INPUT_SIDE / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * side  # crop pixels
        kept = nms(boxes, scores[hits], NMS_IOU)
        return np.concatenate([boxes[kept], scores[hits][kept, None]], axis=1).astype(np.float32)


def keypoint_heads(
    keypoints: list[float | None], origin: tuple[int, int], height: int, threshold: float
) -> np.ndarray:
    """(0 or 1, 4) head box in crop pixels from a crop's stored COCO keypoints (flat x, y, conf in
    frame pixels; ``origin``: the crop's top-left in the frame): a square around the visible
    head keypoints, at least ``HEAD_FRACTION`` of the crop's height."""
    kps = np.array([math.nan if v is None else v for v in keypoints], dtype=np.float64)
    if len(kps) < 3 * len(HEAD_KEYPOINTS):
        return np.zeros((0, 4), np.float32)
    head = kps.reshape(-1, 3)[list(HEAD_KEYPOINTS)]
    seen = head[np.isfinite(head).all(axis=1) & (head[:, 2] > threshold)]
    if not len(seen):
        return np.zeros((0, 4), np.float32)
    xy = seen[:, :2] - np.asarray(origin, np.float64)
    extent = float(np.ptp(xy, axis=0).max()) if len(xy) > 1 else 0.0
    half = max(extent, HEAD_FRACTION * height, 4.0) / 2  # enlarged later like a face box
    cx, cy = xy.mean(axis=0)
    return np.array([[cx - half, cy - half, cx + half, cy + half]], np.float32)


def face_regions(boxes: np.ndarray, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Whole-pixel regions to blur: each box enlarged ``ENLARGE`` times, clipped to the crop."""
    regions = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64)[:, :4]:
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * ENLARGE / 2
        r = (max(0, math.floor(cx - half)), max(0, math.floor(cy - half)))
        r += (min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half)))
        if r[2] > r[0] and r[3] > r[1]:
            regions.append(r)
    return regions


def blur_regions(bgr: np.ndarray, regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A copy of ``bgr`` with each region Gaussian-blurred (sigma a quarter of its larger side),
    the blur computed with the region's surroundings so its edges do not darken."""
    import cv2

    out = bgr.copy()
    for x1, y1, x2, y2 in regions:
        sigma = max(x2 - x1, y2 - y1) * SIGMA_PER_SIDE
        pad = int(math.ceil(3 * sigma))
        ox1, oy1 = max(0, x1 - pad), max(0, y1 - pad)
        ox2, oy2 = min(bgr.shape[1], x2 + pad), min(bgr.shape[0], y2 + pad)
        blurred = cv2.GaussianBlur(out[oy1:oy2, ox1:ox2], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out[y1:y2, x1:x2] = blurred[y1 - oy1 : y2 - oy1, x1 - ox1 : x2 - ox1]
    return out


@dataclass(frozen=True)
class FaceBlur:
    """How ``--blur-faces`` finds the faces it blurs: build-shards' ``face`` settings group, flags
    ``--face-*``."""

    model: str | None = setting(
        None, "--blur-faces: BlazeFace full-range .tflite (default: models/ of the data folder)"
    )
    min_score: float = setting(MIN_SCORE, "--blur-faces: BlazeFace score a face needs (docs/shards.md)")
    pose: bool = setting(
        True,
        "--blur-faces: BlazePose finds the head of a crop without stored keypoints (imported crops, "
        "--from-dets); --no-face-pose: BlazeFace alone",
    )
    pose_model: str | None = setting(
        None, "--blur-faces: BlazePose's .tflite (default: models/ of the data folder)"
    )

    def __post_init__(self) -> None:
        check_range(self, "min_score", 0, 1)

    def plan(self) -> dict[str, Any]:
        """What a plan fingerprints: the models by file name (not where they lie) and the score."""
        return {
            "model": Path(self.model or MODEL_NAME).name,
            "min_score": self.min_score,
            "pose_model": Path(self.pose_model or POSE_MODEL_NAME).name if self.pose else None,
        }


@dataclass(frozen=True)
class Encoding:
    """How a worker turns crop pixels into a sample's JPEG: the quality, and whether (and how,
    ``face``) faces are blurred first. One value travels with every job."""

    quality: int = 95
    blur_faces: bool = False
    face: FaceBlur = field(default_factory=FaceBlur)
    keypoint_threshold: float = 0.3
    _detectors: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def detector(self) -> BlazeFace:
        """This process's BlazeFace (loaded on first use; not pickled with the value)."""
        if "blazeface" not in self._detectors:
            self._detectors["blazeface"] = BlazeFace(self.face.model or default_model(), self.face.min_score)
        return self._detectors["blazeface"]

    def pose(self):
        """This process's BlazePose (``common.detectors.blazepose``), None without ``face.pose``."""
        if not self.face.pose:
            return None
        if "blazepose" not in self._detectors:
            self._detectors["blazepose"] = BlazePoseKeypoints(
                self.face.pose_model or str(default_model(POSE_MODEL_NAME))
            )
        return self._detectors["blazepose"]

    def heads(
        self, bgr: np.ndarray, keypoints: list | None, origin: tuple[int, int]
    ) -> tuple[np.ndarray, str]:
        """(head boxes, their source): from the stored keypoints, else from BlazePose on the crop."""
        height, width = bgr.shape[:2]
        if keypoints:
            return keypoint_heads(keypoints, origin, height, self.keypoint_threshold), "keypoints"
        pose = self.pose()
        if pose is None:
            return np.zeros((0, 4), np.float32), "blazepose"
        [kps] = pose([(bgr[..., :3], np.array([[0, 0, width, height, 1.0]]))])
        return keypoint_heads(kps[0].ravel().tolist(), (0, 0), height, POSE_THRESHOLD), "blazepose"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_detectors": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def blur(
        self, bgr: np.ndarray, keypoints: list | None = None, origin: tuple[int, int] = (0, 0)
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """(pixels, the crop JSON's ``faces`` entry) of a BGR crop; the pixels unchanged and ``{}``
        when blurring is off. ``faces``: how many regions were blurred, how many faces each source
        found (``blazeface``, ``keypoints``: detect's, ``blazepose``: run here), and the regions (x1, y1,
        x2, y2 in crop pixels)."""
        if not self.blur_faces:
            return bgr, {}
        height, width = bgr.shape[:2]
        found = self.detector()(bgr)[:, :4]
        heads, source = self.heads(bgr, keypoints, origin)
        regions = face_regions(np.concatenate([found, heads]), width, height)
        record = {"blurred": len(regions), "blazeface": len(found), "keypoints": 0, "blazepose": 0}
        record[source] = len(heads)
        record["regions"] = [list(r) for r in regions]
        return (blur_regions(bgr, regions) if regions else bgr), {"faces": record}

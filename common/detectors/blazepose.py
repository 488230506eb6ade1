"""BlazePose GHUM "full" keypoints on LiteRT: an offline keypoint adapter beside HRNet-W32.

Top-down on every person box, like ``detect.pose.HRNetKeypoints``: the box is padded by 1.25
around its center to a square (the model's input is 256x256), warped there with an affine map
(bilinear, black outside the frame), and fed as RGB in [0, 1]. The model's 33 body landmarks
(x, y in input pixels) are mapped back through the inverse of that map, and the 17 COCO
keypoints taken from them. A keypoint's confidence is pose-present x sigmoid(visibility) x
sigmoid(presence): the chance that a person is in the crop and this landmark is in it and not
occluded (docs/detect.md); it is 0 when the keypoint lands outside the person box. The model
places a whole body in whatever it is shown, so a half-body crop mostly fails through the
pose-present score. That score is also kept per box (``last_pose_present``).

Coordinates use the pixel-edge convention (pixel ``i`` covers [i, i + 1)), the model's own: a
landmark at input x maps back to ``(x - 128) / s + cx`` with ``s = 256 / side``.

Example (the model file: ../shared/data/models/pose_landmark_full.tflite)::

    pose = BlazePoseKeypoints("pose_landmark_full.tflite")
    [kps] = pose([(frame_bgr, np.array([[x1, y1, x2, y2, score]]))])  # (1, 17, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UsageError

INPUT_SIDE = 256
PADDING = 1.25
# BlazePose landmark of each COCO keypoint: nose, eyes (l, r), ears (l, r), shoulders, elbows,
# wrists, hips, knees, ankles.
COCO_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
BODY_LANDMARKS = 33


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32, without overflow warnings for large logits."""
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float32)))).astype(np.float32)


def square_warp(box: np.ndarray, padding: float = PADDING) -> tuple[np.ndarray, float, np.ndarray]:
    """(2x3 OpenCV affine map frame -> 256x256 input, scale s, center) of a box padded to a square.

    In the pixel-edge convention the map is ``u = s * (x - cx) + 128``; OpenCV's warp counts pixel
    centers, so its matrix gets the half-pixel shift ``0.5 * (s - 1)``.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    center = np.array([(x1 + x2) * 0.5, (y1 + y2) * 0.5], dtype=np.float64)
    side = max(x2 - x1, y2 - y1, 1.0) * padding
    s = INPUT_SIDE / side
    shift = INPUT_SIDE * 0.5 + 0.5 * (s - 1.0) - s * center  # (2,)
    matrix = np.array([[s, 0.0, shift[0]], [0.0, s, shift[1]]], dtype=np.float64)
    return matrix, s, center


def crop_square(frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(1x256x256x3 float32 RGB in [0, 1], scale, center) of one box of a BGR uint8 frame."""
    import cv2

    matrix, s, center = square_warp(box)
    crop = cv2.warpAffine(frame, matrix, (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR)
    rgb = crop[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)  # 256 x 256 x 3
    return rgb[None], s, center


def coco_keypoints(
    landmarks: np.ndarray, present: float, s: float, center: np.ndarray, box: np.ndarray
) -> np.ndarray:
    """(39, 5) raw landmarks and pose-present score of one crop -> (17, 3) x, y, conf in frame
    pixels; conf is 0 outside the box (x1 <= x <= x2, y1 <= y <= y2)."""
    body = landmarks[list(COCO_FROM_BLAZEPOSE)]  # 17 x 5: x, y, z, visibility, presence logits
    xy = (body[:, :2].astype(np.float64) - INPUT_SIDE * 0.5) / s + center  # 17 x 2, frame pixels
    conf = np.float32(min(max(present, 0.0), 1.0)) * sigmoid(body[:, 3]) * sigmoid(body[:, 4])  # 17
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    inside = (xy[:, 0] >= x1) & (xy[:, 0] <= x2) & (xy[:, 1] >= y1) & (xy[:, 1] <= y2)
    conf = np.where(inside, conf, np.float32(0.0))
    return np.concatenate([xy, conf[:, None]], axis=1).astype(np.float32)


class BlazePoseKeypoints:
    """MediaPipe BlazePose GHUM full (``pose_landmark_full.tflite``) on the LiteRT interpreter.

    One interpreter per adapter, ``threads`` CPU threads (one per detect worker is enough: a crop
    takes ~16 ms on one core). After each call ``last_pose_present`` holds, per item, the (M,)
    pose-present scores of its boxes (the caller may store them beside the keypoints).
    """

    name = "blazepose"

    def __init__(self, weights: str | None, threads: int = 1) -> None:
        path = Path(weights or "")
        if not weights or path.suffix != ".tflite" or not path.is_file():
            raise UsageError(
                f"--keypoints blazepose: pose weights {weights!r} is not a .tflite file; "
                "pass --pose-weights PATH/pose_landmark_full.tflite (docs/detect.md)"
            )
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise UsageError(f"--keypoints blazepose: cannot load {path}: {str(e).splitlines()[0]}") from None
        outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        inputs = self.interpreter.get_input_details()
        shape = [list(d["shape"]) for d in inputs]
        if shape != [[1, INPUT_SIDE, INPUT_SIDE, 3]] or not {"Identity", "Identity_1"} <= outputs.keys():
            raise UsageError(f"--keypoints blazepose: {path} is not BlazePose's 256x256 landmark model")
        self.input_index = inputs[0]["index"]
        self.landmarks_index, self.pose_index = outputs["Identity"], outputs["Identity_1"]
        self.last_pose_present: list[np.ndarray] = []

    def run(self, crop: np.ndarray) -> tuple[np.ndarray, float]:
        """One (1, 256, 256, 3) input -> ((39, 5) raw landmarks, pose-present score)."""
        self.interpreter.set_tensor(self.input_index, crop)
        self.interpreter.invoke()
        landmarks = self.interpreter.get_tensor(self.landmarks_index).reshape(-1, 5)  # 39 x 5
        pose_present = float(self.interpreter.get_tensor(self.pose_index).reshape(-1)[0])
        return landmarks.copy(), pose_present

    def __call__(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Per item (BGR frame, (M, >=4) boxes): (M, 17, 3) float32 x, y, conf in frame pixels."""
        out, pose_present = [], []
        for frame, boxes in items:
            kps = np.zeros((len(boxes), 17, 3), dtype=np.float32)  # M x 17 x 3
            present = np.zeros(len(boxes), dtype=np.float32)  # M
            for i, box in enumerate(boxes):
                crop, s, center = crop_square(frame, box)
                landmarks, present[i] = self.run(crop)
                kps[i] = coco_keypoints(landmarks, float(present[i]), s, center, box)
            out.append(kps)
            pose_present.append(present)
        self.last_pose_present = pose_present
        return out

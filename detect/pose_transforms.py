"""mmpose's top-down preprocessing and heatmap decoding, without mmpose (numpy + OpenCV).

Preprocessing (mmpose ``bbox_xyxy2cs`` + ``TopdownAffine``): the box is padded by 1.25, its
aspect fixed to the input's 192:256 by growing the short side, and the region warped to 192x256
with an affine map (bilinear); pixels are RGB, normalized with the ImageNet mean and std.

Decoding (mmpose ``MSRAHeatmap`` with ``unbiased=False``): per keypoint the heatmap's arg-max,
moved a quarter pixel toward the higher neighbour in x and in y, scaled back through the box's
center and scale to source pixels; the confidence is the heatmap maximum.
"""

from __future__ import annotations

import numpy as np

INPUT_SIZE = (192, 256)  # (w, h) of the network input, the paper's HRNet-W32 256x192
HEATMAP_SIZE = (48, 64)  # (w, h): 1/4 of the input
PADDING = 1.25
MEAN_RGB = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], dtype=np.float32)
# COCO: swap left and right keypoints when the image is mirrored
FLIP_INDICES = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]


def box_to_center_scale(box: np.ndarray, padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) in pixels of an x1, y1, x2, y2 box: padded, aspect fixed to 192:256."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    center = np.array([(x1 + x2) * 0.5, (y1 + y2) * 0.5], dtype=np.float32)
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = INPUT_SIZE[0] / INPUT_SIZE[1]
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float32)


def warp_matrix(center: np.ndarray, scale: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """2x3 affine map from source pixels to the ``size`` crop (mmpose ``get_warp_matrix``, rot 0).

    Built like mmpose from three point pairs (center, a point above it, and a third at a right
    angle) with ``cv2.getAffineTransform`` on float32 points, so crops match mmpose's bit for bit.
    """
    import cv2

    src_w = float(scale[0])
    dst_w, dst_h = size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, src_w * -0.5], dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + np.array([0.0, dst_w * -0.5], dtype=np.float32)
    for pts in (src, dst):  # third point: the second rotated 90° about the first
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def crop_person(frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(256x192x3 BGR crop, center, scale) of one box."""
    import cv2

    center, scale = box_to_center_scale(box)
    crop = cv2.warpAffine(frame, warp_matrix(center, scale), INPUT_SIZE, flags=cv2.INTER_LINEAR)
    return crop, center, scale


def normalize(crops):
    """(N, H, W, 3) BGR uint8 tensor -> (N, 3, H, W) float RGB, ImageNet-normalized (same device)."""
    import torch

    x = crops.flip(-1).permute(0, 3, 1, 2).float()  # BGR -> RGB, NHWC -> NCHW
    mean = torch.as_tensor(MEAN_RGB, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(STD_RGB, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def flip_back(heatmaps):
    """Heatmaps of mirrored crops -> heatmaps of the originals (mmpose ``flip_heatmaps``,
    ``shift_heatmap=True``): mirror, swap left/right channels, shift one pixel right."""
    out = heatmaps.flip(-1)[:, FLIP_INDICES]
    out[..., 1:] = out[..., :-1].clone()
    return out


def heatmap_maxima(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) integer (x, y) of each heatmap's maximum and (N, K) its value; (-1, -1) where
    the maximum is <= 0 (mmpose ``get_heatmap_maximum``)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    vals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    locs = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    locs[vals <= 0] = -1
    return locs, vals


def refine_quarter(locs: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Move each maximum 0.25 px toward its higher neighbour (mmpose ``refine_keypoints``).

    x moves when 1 < x < W-1, y when 1 < y < H-1 (mmpose's bounds), by the sign of the difference
    of the two neighbours.
    """
    n, k, h, w = heatmaps.shape
    out = locs.copy()
    x, y = locs[..., 0].astype(int), locs[..., 1].astype(int)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    move_x = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    move_y = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    xs, ys = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
    yc, xc = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
    dx = heatmaps[ni, ki, yc, xs + 1] - heatmaps[ni, ki, yc, xs - 1]
    dy = heatmaps[ni, ki, ys + 1, xc] - heatmaps[ni, ki, ys - 1, xc]
    out[..., 0] += np.where(move_x, np.sign(dx), 0) * 0.25
    out[..., 1] += np.where(move_y, np.sign(dy), 0) * 0.25
    return out


def decode_heatmaps(heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(N, K, H, W) heatmaps of crops with (N, 2) centers and scales -> (N, K, 3) x, y, conf in
    source pixels: heatmap pixel ``x`` maps to ``x * scale_w / W + center_x - scale_w / 2``."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    n, k, h, w = heatmaps.shape
    locs, vals = heatmap_maxima(heatmaps)
    locs = refine_quarter(locs, heatmaps)
    size = np.array([w, h], dtype=np.float32)
    xy = locs / size * scales[:, None, :] + centers[:, None, :] - scales[:, None, :] * 0.5
    return np.concatenate([xy, vals[..., None]], axis=-1).astype(np.float32)

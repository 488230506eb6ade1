"""Keypoint adapters: ``pose(items) -> keypoints`` for boxes on frames, COCO 17 x (x, y, conf).

``items`` is a list of ``(frame, boxes)`` with boxes (M, >=4) x1, y1, x2, y2 in source pixels; the
result is one (M, 17, 3) float32 array per item, in source pixels. Crops of all items are batched
together through the model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from common.errors import UsageError
from detect.pose_transforms import crop_person, decode_heatmaps, flip_back, normalize

log = logging.getLogger(__name__)


def fetch_weights(spec: str) -> Path:
    """A local checkpoint path, downloading ``http(s)://`` specs into torch's hub cache once."""
    if "://" not in spec:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"pose weights {spec}: no such file")
        return path
    import torch

    target = Path(torch.hub.get_dir()) / "checkpoints" / spec.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(spec, str(target), progress=False)
        except Exception as e:  # offline, proxy, HTTP error: all mean "give a local file"
            raise UsageError(
                f"pose weights: cannot download {spec} ({type(e).__name__}); "
                "pass --pose-weights PATH to an mmpose HRNet-W32 checkpoint, or --keypoints none"
            ) from None
    return target


class HRNetKeypoints:
    """HRNet-W32 (``detect.hrnet``) with mmpose's pre- and post-processing, batched on ``device``."""

    name = "hrnet_w32"

    def __init__(
        self, weights: str | None, device: str = "cpu", batch_size: int = 64, flip_test: bool = True
    ):
        from detect.hrnet import CheckpointError, HRNetW32Pose, load_mmpose_checkpoint

        if not weights:
            raise UsageError("--keypoints hrnet needs --pose-weights (an mmpose HRNet-W32 COCO checkpoint)")
        model = HRNetW32Pose()
        try:
            load_mmpose_checkpoint(model, fetch_weights(weights))
        except CheckpointError as e:
            raise UsageError(f"pose weights {weights}: {e}") from None
        self.model = model.eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.flip_test = flip_test

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """(N, 256, 192, 3) BGR uint8 crops -> (N, 17, 64, 48) heatmaps (flip test averaged)."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                x = normalize(torch.from_numpy(crops[start : start + self.batch_size]).to(self.device))
                heat = self.model(x)  # B x 17 x 64 x 48
                if self.flip_test:
                    heat = (heat + flip_back(self.model(x.flip(-1)))) * 0.5
                out.append(heat.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 17, 64, 48), dtype=np.float32)

    def __call__(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        crops, centers, scales, counts = [], [], [], []
        for frame, boxes in items:
            counts.append(len(boxes))
            for box in boxes:
                crop, center, scale = crop_person(frame, box)
                crops.append(crop)
                centers.append(center)
                scales.append(scale)
        if not crops:
            return [np.zeros((0, 17, 3), dtype=np.float32) for _ in items]
        keypoints = decode_heatmaps(self.heatmaps(np.stack(crops)), np.stack(centers), np.stack(scales))
        return np.split(keypoints, np.cumsum(counts)[:-1])


class MMPoseKeypoints:
    """mmpose's own top-down HRNet-W32 (when ``mmpose`` is installed): a second, reference backend."""

    name = "mmpose"
    CONFIG = "configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py"

    def __init__(self, weights: str | None, device: str = "cpu"):
        try:
            import mmpose
            from mmpose.apis import inference_topdown, init_model
        except ImportError as e:
            raise UsageError(
                f"--keypoints mmpose: mmpose is not importable ({e}); use --keypoints hrnet"
            ) from None
        if not weights:
            raise UsageError("--keypoints mmpose needs --pose-weights (an mmpose 1.x HRNet-W32 checkpoint)")
        config = Path(mmpose.__file__).parent / ".mim" / self.CONFIG
        if not config.is_file():
            raise UsageError(f"--keypoints mmpose: the model config {config} is not installed with mmpose")
        self.model = init_model(str(config), str(fetch_weights(weights)), device=device)
        self.inference_topdown = inference_topdown

    def __call__(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        out = []
        for frame, boxes in items:
            if len(boxes) == 0:
                out.append(np.zeros((0, 17, 3), dtype=np.float32))
                continue
            samples = self.inference_topdown(self.model, frame, np.asarray(boxes)[:, :4], bbox_format="xyxy")
            xy = np.concatenate([s.pred_instances.keypoints for s in samples])  # M x 17 x 2
            conf = np.concatenate([s.pred_instances.keypoint_scores for s in samples])  # M x 17
            out.append(np.concatenate([xy, conf[..., None]], axis=-1).astype(np.float32))
        return out

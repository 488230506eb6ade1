"""The YOLO adapter through the real ultralytics code path, with a model built from its yaml.

No weights can be downloaded here: the test builds YOLOv5s from ``yolov5su.yaml`` (random
weights), saves it as a ``.pt`` file, and loads that file through the adapter. With random
weights it checks the output format, shapes and coordinate domain, not what is detected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from common.errors import UsageError
from common.manifests import boxes as box_file
from common.media.frames import read_frames
from detect.run import detect
from detect.settings import DetectSettings


@pytest.fixture(scope="module")
def weights(tmp_path_factory, monkeypatch_module):
    from ultralytics import YOLO

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yolo") / "yolov5s_random.pt"
    YOLO("yolov5su.yaml").save(str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    """Keep ultralytics' settings file out of the home directory."""
    mp = pytest.MonkeyPatch()
    mp.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics_config")))
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def frames(videos_dir):
    """Two real frames of different sizes."""
    a = dict(read_frames(videos_dir / "street-crossing.mp4", [300]))[300]  # 640x360
    b = dict(read_frames(videos_dir / "one-by-one-person-detection.mp4", [700]))[700]  # 768x432
    return [a, b]


def test_batch_output_format(weights, frames):
    from common.detectors.yolo import YoloDetector

    detector = YoloDetector(str(weights), device="cpu", record_score=0.0)
    assert detector.name == "yolo:yolov5s_random.pt" and detector.person == 0
    out = detector(frames)
    assert len(out) == 2
    for boxes, frame in zip(out, frames, strict=True):
        h, w = frame.shape[:2]
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
        assert 0 < len(boxes) <= 300  # ultralytics' max_det
        x1, y1, x2, y2, score = boxes.T
        assert (x1 >= 0).all() and (x2 <= w).all() and (y1 >= 0).all() and (y2 <= h).all()
        assert (x2 >= x1).all() and (y2 >= y1).all()
        assert ((score >= 0) & (score <= 1)).all() and (np.diff(score) <= 0).all()


def test_a_frame_gets_the_same_boxes_whatever_shares_its_batch(weights, frames):
    """Detection batches span videos of different sizes; a frame's boxes must not depend on them."""
    from common.detectors.yolo import YoloDetector

    detector = YoloDetector(str(weights), device="cpu", record_score=0.0)
    a, b = frames
    mixed = detector([a, b, a])
    alone = [detector([a])[0], detector([b])[0]]
    for got, expected in zip(mixed, [alone[0], alone[1], alone[0]], strict=True):
        assert got.shape == expected.shape and len(got) > 0
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def test_record_score_is_the_candidate_threshold(weights, frames):
    from common.detectors.yolo import YoloDetector

    boxes = YoloDetector(str(weights), device="cpu", record_score=0.001)(frames[:1])[0]
    assert (boxes[:, 4] > 0.001).all()


def test_detect_stage_with_local_yolo_weights(weights, videos_dir, tmp_path):
    pd.DataFrame(
        [
            {
                "video_id": "one-by-one-person-detection",
                "path": str(videos_dir / "one-by-one-person-detection.mp4"),
                "keep": True,
                "n_frames": 1394,
            }
        ]
    ).to_parquet(tmp_path / "video_filter.parquet")
    cfg = DetectSettings(
        detector_weights=str(weights),
        keypoints="none",
        frame_step=700,
        record_score=0.0,
        device="cpu",
        workers=0,
    )
    summary = detect(cfg, tmp_path)
    table = pd.read_parquet(box_file.path_of(tmp_path, "one-by-one-person-detection"))
    assert summary["frames_sampled"] == 2 and set(table["frame"]) <= {0, 700}
    assert (table["detector"] == "yolo:yolov5s_random.pt").all()
    # random weights score far below the paper's 0.72: every box is recorded as low_score
    assert len(table) > 0 and (table["status"] == "low_score").all() and not table["valid"].any()


def test_unavailable_weights_are_a_usage_error(tmp_path, monkeypatch_module):
    from common.detectors.yolo import YoloDetector

    with pytest.raises(UsageError, match="no such file"):
        YoloDetector(str(tmp_path / "missing.pt"))
    with pytest.raises(UsageError, match="--detector-weights"):
        YoloDetector("yolov5xu.pt")  # YOLO_OFFLINE=1: ultralytics cannot download it


@pytest.mark.gpu
def test_gpu_batch(weights, frames):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from common.detectors.yolo import YoloDetector

    detector = YoloDetector(str(weights), device="auto", record_score=0.0)
    assert detector.device == "cuda:0" and detector.precision == 16
    for boxes, frame in zip(detector(frames), frames, strict=True):
        assert boxes.dtype == np.float32 and boxes.shape[1] == 5 and len(boxes) > 0
        assert (boxes[:, 2] <= frame.shape[1]).all() and (boxes[:, 3] <= frame.shape[0]).all()

"""HRNet-W32 without mmcv: mmpose checkpoint layout, preprocessing and heatmap decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.errors import UsageError
from common.manifests import boxes as box_file
from common.media.frames import read_frames
from detect.hrnet import (
    CheckpointError,
    HRNetW32Pose,
    load_mmpose_checkpoint,
    to_mmpose_state_dict,
    unused_backbone_keys,
)
from detect.pose_transforms import (
    box_to_center_scale,
    crop_person,
    decode_heatmaps,
    flip_back,
    normalize,
    warp_matrix,
)

# --- preprocessing: box -> aspect-fixed padded crop ------------------------------------------


def test_tall_box_grows_in_width():
    # 48 x 128 box, padded 1.25 -> 60 x 160; 60 < 160 * 192/256 = 120, so the width grows to 120
    center, scale = box_to_center_scale(np.array([100, 50, 148, 178]))
    np.testing.assert_allclose(center, [124, 114])
    np.testing.assert_allclose(scale, [120, 160])
    # 192 / 120 = 1.6 px of crop per source px; the center lands on the crop center (96, 128)
    np.testing.assert_allclose(
        warp_matrix(center, scale), [[1.6, 0, 96 - 1.6 * 124], [0, 1.6, 128 - 1.6 * 114]], atol=1e-4
    )


def test_wide_box_grows_in_height():
    center, scale = box_to_center_scale(np.array([0, 0, 200, 100]))
    np.testing.assert_allclose(center, [100, 50])
    np.testing.assert_allclose(scale, [250, 250 / 0.75], rtol=1e-6)


def bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """``image`` at the real-valued point (x, y), interpolated by hand."""
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    patch = image[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)
    weights = np.array([[(1 - fx) * (1 - fy), fx * (1 - fy)], [(1 - fx) * fy, fx * fy]])
    return (patch * weights[..., None]).sum(axis=(0, 1))


def test_crop_samples_the_right_pixels(videos_dir):
    frame = dict(read_frames(videos_dir / "street-crossing.mp4", [300]))[300]
    box = np.array([500.0, 110.0, 620.0, 310.0])  # 120 x 200, padded 150 x 250, width grows to 187.5
    crop, center, scale = crop_person(frame, box)
    assert crop.shape == (256, 192, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(scale, [187.5, 250.0])
    s = 192 / 187.5  # crop pixels per source pixel
    for u, v in [(96, 128), (10, 20), (150, 240), (60, 5), (120, 200)]:
        x, y = (u - 96) / s + 560, (v - 128) / s + 210  # where crop pixel (u, v) comes from
        # OpenCV interpolates with 1/32-pixel weights: allow a few levels
        np.testing.assert_allclose(crop[v, u], bilinear(frame, x, y), atol=4)
    assert (crop[:, -1] == 0).all()  # x = 560 + 95 / s = 652.8 is right of the 640-pixel frame


def test_normalize_is_rgb_imagenet():
    crops = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)  # one BGR pixel
    x = normalize(crops)
    expected = [(255 - 123.675) / 58.395, (128 - 116.28) / 57.12, (0 - 103.53) / 57.375]
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), expected, rtol=1e-6)


# --- decoding: arg-max, quarter-pixel shift, back to source pixels ---------------------------


def test_decode_hand_computed():
    heat = np.zeros((1, 3, 64, 48), dtype=np.float32)
    heat[0, 0, 20, 10] = 0.9  # peak at x=10, y=20
    heat[0, 0, 20, 11], heat[0, 0, 20, 9] = 0.5, 0.2  # right neighbour higher: x + 0.25
    heat[0, 0, 19, 10], heat[0, 0, 21, 10] = 0.4, 0.1  # upper neighbour higher: y - 0.25
    heat[0, 1, 63, 1] = 0.8  # x = 1 and y = H-1: mmpose shifts neither
    heat[0, 1, 63, 2], heat[0, 1, 62, 1] = 0.5, 0.5
    heat[0, 2] = -1.0  # no positive peak: mmpose puts it at (-1, -1)
    center, scale = np.array([[124.0, 114.0]]), np.array([[120.0, 160.0]])
    kps = decode_heatmaps(heat, center, scale)
    # x_src = x_hm * 120 / 48 + 124 - 60 ; y_src = y_hm * 160 / 64 + 114 - 80
    np.testing.assert_allclose(kps[0, 0], [10.25 * 2.5 + 64, 19.75 * 2.5 + 34, 0.9], rtol=1e-6)
    np.testing.assert_allclose(kps[0, 1], [1 * 2.5 + 64, 63 * 2.5 + 34, 0.8], rtol=1e-6)
    np.testing.assert_allclose(kps[0, 2], [-2.5 + 64, -2.5 + 34, -1.0], rtol=1e-6)


def test_flip_back_swaps_sides_and_shifts():
    heat = torch.zeros(1, 17, 4, 5)
    heat[0, 1, 2, 1] = 1.0  # left eye at x=1 in the mirrored crop
    heat[0, 0, 1, 3] = 2.0  # nose at x=3
    out = flip_back(heat)
    # mirrored x = 4 - x, shifted right by one pixel; the left eye becomes the right eye (index 2)
    assert out[0, 2, 2, 4] == 1.0 and out[0, 1].sum() == 0
    assert out[0, 0, 1, 2] == 2.0 and out[0, 0].sum() == 2.0


# --- the model and mmpose checkpoints ---------------------------------------------------------


def randomized(seed: int) -> HRNetW32Pose:
    """HRNet-W32 with random weights and random batch-norm statistics, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    model = HRNetW32Pose().eval()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                values = (
                    torch.rand(t.shape, generator=gen) * 0.5 + 0.75 if name.endswith("running_var") else None
                )
                t.copy_(values if values is not None else torch.randn(t.shape, generator=gen) * 0.05)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomized model saved in mmpose 1.x layout (as mmpose's own checkpoints are)."""
    model = randomized(0)
    path = tmp_path_factory.mktemp("hrnet") / "hrnet_w32_mmpose.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": to_mmpose_state_dict(model)}, path)
    return model, path


def test_layout_is_mmpose(checkpoint):
    model, path = checkpoint
    keys = torch.load(path, weights_only=True)["state_dict"].keys()
    for key in [
        "backbone.conv1.weight",
        "backbone.layer1.0.downsample.0.weight",
        "backbone.transition1.1.0.0.weight",
        "backbone.stage2.0.branches.1.3.conv2.weight",
        "backbone.stage4.2.fuse_layers.0.3.0.weight",
        "backbone.stage3.3.fuse_layers.2.0.0.0.weight",
        "head.final_layer.weight",
    ]:
        assert key in keys
    unused = unused_backbone_keys(model)
    assert all(
        k.startswith(("stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3."))
        for k in unused
    )
    assert len([k for k in unused if not k.endswith("num_batches_tracked")]) == 65
    assert not any(k.removeprefix("backbone.") in unused for k in keys)


@pytest.fixture(scope="module")
def pose(checkpoint):
    """The keypoint adapter, loading the checkpoint file into a freshly (differently) built model."""
    from detect.pose import HRNetKeypoints

    return HRNetKeypoints(str(checkpoint[1]), device="cpu", flip_test=True)


@pytest.fixture(scope="module")
def person(videos_dir):
    """Frame 300 of one-by-one-person-detection.mp4 and a box around the person in it."""
    frame = dict(read_frames(videos_dir / "one-by-one-person-detection.mp4", [300]))[300]
    return frame, np.array([[380.0, 0.0, 550.0, 390.0, 0.9]], dtype=np.float32)


def test_checkpoint_round_trip_identical_outputs(checkpoint, pose, person):
    model, _ = checkpoint
    crop, _, _ = crop_person(person[0], person[1][0])
    x = normalize(torch.from_numpy(crop[None, ::2, ::2].copy()))  # 1 x 3 x 128 x 96: fast on CPU
    with torch.inference_mode():
        expected, got = model(x), pose.model(x)
    assert got.shape == (1, 17, 32, 24)
    assert torch.equal(expected, got)


def test_mmpose_0x_head_prefix_loads(checkpoint, pose):
    from detect.hrnet import from_mmpose_state_dict

    model, path = checkpoint
    state = torch.load(path, weights_only=True)["state_dict"]
    state = {k.replace("head.final_layer", "keypoint_head.final_layer"): v for k, v in state.items()}
    from_mmpose_state_dict(pose.model, state)  # the same values again, under mmpose 0.x names
    assert torch.equal(pose.model.final_layer.weight, model.final_layer.weight)
    key = "stage3.2.fuse_layers.0.1.0.weight"
    assert torch.equal(pose.model.backbone.state_dict()[key], model.backbone.state_dict()[key])


def test_missing_and_unexpected_keys_are_named(checkpoint, pose, tmp_path):
    _, path = checkpoint
    state = dict(torch.load(path, weights_only=True)["state_dict"])
    del state["backbone.stage2.0.branches.0.0.conv1.weight"]
    state["head.deconv_layers.0.weight"] = torch.zeros(1)
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointError) as err:
        load_mmpose_checkpoint(pose.model, bad)  # raises before loading anything
    message = str(err.value)
    assert "1 missing keys (backbone.stage2.0.branches.0.0.conv1.weight)" in message
    assert "1 unexpected keys (head.deconv_layers.0.weight)" in message
    assert "1 shape mismatches (layer1.0.conv1.weight (3, 3)" in message


def test_adapter_keypoints_on_a_real_person(pose, person):
    frame, boxes = person
    (kps,) = pose([(frame, boxes)])
    assert kps.shape == (1, 17, 3) and kps.dtype == np.float32
    center, scale = box_to_center_scale(boxes[0])
    left, top = center - scale / 2
    # a keypoint with a positive peak lies in the padded, aspect-fixed box; one without sits at
    # heatmap pixel (-1, -1) like mmpose's
    x, y, conf = kps[0].T
    inside = (x >= left) & (x <= left + scale[0]) & (y >= top) & (y <= top + scale[1])
    assert inside[conf > 0].all()
    np.testing.assert_allclose(x[conf <= 0], left - scale[0] / 48, rtol=1e-5)
    assert pose([(frame, boxes[:0])])[0].shape == (0, 17, 3)


def test_detect_stage_applies_keypoint_rules(checkpoint, videos_dir, tmp_path):
    import pandas as pd

    from detect.person_rules import PersonRules, person_reason
    from detect.run import detect
    from detect.settings import DetectSettings

    row = {
        "video_id": "street",
        "path": str(videos_dir / "street-crossing.mp4"),
        "keep": True,
        "n_frames": 671,
    }
    pd.DataFrame([row]).to_parquet(tmp_path / "video_filter.parquet")
    cfg = DetectSettings(
        detector="hog",
        pose_weights=str(checkpoint[1]),
        pose_flip_test=False,
        frame_step=100,
        device="cpu",
        workers=0,
    )
    summary = detect(cfg, tmp_path)
    table = pd.read_parquet(box_file.path_of(tmp_path, "street"))
    assert summary["keypoint_model"] == "hrnet_w32" and (table["keypoint_model"] == "hrnet_w32").all()
    box_ok = table["status"].isin(["ok", "no_head", "no_upper_body", "no_lower_body"])
    assert box_ok.sum() >= 1
    assert all(len(k) == 51 for k in table.loc[box_ok, "keypoints"])  # computed where the box rules pass
    assert all(len(k) == 0 for k in table.loc[~box_ok, "keypoints"])
    rules = PersonRules(min_score=cfg.hog_min_score)
    expected = [
        person_reason(r.x1, r.y1, r.x2, r.y2, r.score, r.keypoints if len(r.keypoints) else None, rules)
        for r in table.itertuples()
    ]
    assert table["status"].tolist() == expected


def test_adapter_needs_weights():
    from detect.pose import HRNetKeypoints

    with pytest.raises(UsageError, match="pose-weights"):
        HRNetKeypoints(None)
    with pytest.raises(UsageError, match="no such file"):
        HRNetKeypoints("/nonexistent/hrnet.pth")


@pytest.mark.gpu
def test_gpu_heatmaps_match_cpu(checkpoint):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    model, _ = checkpoint
    x = torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cpu = model(x)
        gpu = model.to("cuda").eval()(x.cuda()).cpu()
    model.to("cpu")
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=1e-3)

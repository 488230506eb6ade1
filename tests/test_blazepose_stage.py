"""detect with ``--keypoints blazepose`` on a real clip, and the demo's use of it.

``one-by-one-person-detection.mp4`` has people walking through a room and, near the camera,
close-ups of a head, a shoulder, a torso that HOG takes for persons: the keypoint rules must drop
those (no person found: ``no_head``) and keep the whole walkers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import pipeline
from common.manifests import boxes as box_file
from detect.run import detect
from detect.settings import DetectSettings

MODEL = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "models" / "pose_landmark_full.tflite"
)


@pytest.fixture(scope="module")
def summary(videos_dir, tmp_path_factory) -> dict:
    """detect (HOG + BlazePose, every 25th frame) on one-by-one-person-detection.mp4."""
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is in requirements.txt")
    if not MODEL.is_file():
        pytest.skip(f"sample data missing: {MODEL} (CI always has ../shared/data)")
    root = tmp_path_factory.mktemp("blazepose_ws")
    row = {
        "video_id": "one-by-one",
        "path": str(videos_dir / "one-by-one-person-detection.mp4"),
        "keep": True,
        "n_frames": 1394,
        "status": "ok",
    }
    pd.DataFrame([row]).to_parquet(root / "video_filter.parquet")
    cfg = DetectSettings(
        detector="hog", keypoints="blazepose", pose_weights=str(MODEL), frame_step=25, workers=0, batch_size=8
    )
    return detect(cfg, root) | {"root": root}


def test_summary_names_the_model_and_counts_reasons(summary):
    assert summary["keypoint_model"] == "blazepose" and summary["keypoint_rules"] == "applied"
    assert sum(summary["reasons"].values()) == summary["boxes"]
    assert summary["reasons"].get("ok", 0) == summary["valid_boxes"]


def test_pose_present_is_stored_where_keypoints_were_computed(summary):
    table = pd.read_parquet(box_file.path_of(summary["root"], "one-by-one"))  # pandas, not our reader
    computed = table["keypoints"].map(len) == 51
    assert computed.any() and table.loc[computed, "pose_present"].between(0, 1).all()
    assert table.loc[~computed, "pose_present"].isna().all()
    # a kept box has keypoints scoring > 0.8 = pose-present x two sigmoids, so pose-present > 0.8
    assert (table.loc[table["status"] == "ok", "pose_present"] > 0.8).all()
    meta = pq.read_schema(box_file.path_of(summary["root"], "one-by-one")).metadata
    assert meta[b"keypoint_threshold"] == b"0.8"  # what the rules applied, for the stats report


def test_close_ups_dropped_walkers_kept(summary):
    """Measured: 37 boxes, 25 low_score, 7 no_head (all close-ups: the back of a head, a shoulder,
    a torso), 5 ok (4 whole walkers; 1 close-up of blond hair over a shoulder, a miss)."""
    reasons = summary["reasons"]
    assert reasons.get("no_head", 0) >= 5, reasons
    assert reasons.get("ok", 0) >= 3, reasons


def test_demo_without_the_pose_model_is_one_line(tmp_path, capsys, videos_dir):
    missing = tmp_path / "pose_landmark_full.tflite"
    args = [
        "demo",
        "--root",
        str(tmp_path / "out"),
        "--videos",
        str(videos_dir),
        "--pose-weights",
        str(missing),
    ]
    assert pipeline.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pose weights" in err and str(missing) in err, err
    assert not (tmp_path / "out" / "detections").exists()


def test_detect_with_hrnet_weights_and_blazepose_is_one_line(tmp_path, capsys):
    assert pipeline.main(["detect", "--root", str(tmp_path), "--keypoints", "blazepose"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--pose-weights PATH/pose_landmark_full.tflite" in err, err

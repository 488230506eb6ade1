"""build-shards from filter + detect outputs on a real video, then stats and verify-shards on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import webdataset as wds
from PIL import Image
from reference import reference_frames

from common.manifests import boxes as box_file
from shards.build import build_shards
from shards.checks.stats import stats
from shards.checks.verify import verify_shards
from shards.settings import ShardSettings, StatsSettings, VerifySettings

VIDEO = "one-by-one-person-detection.mp4"  # 768x432, 1,394 frames
# (frame, x1, y1, x2, y2, score, valid): person boxes found by OpenCV's HOG on these frames,
# moved by a fraction of a pixel so that rounding matters, plus boxes that test the edges.
BOXES = {
    "v1": [
        (100, 459.4, 68.6, 530.2, 209.5, 0.91, True),
        (100, 351.0, 65.0, 472.0, 306.0, 0.80, True),
        (100, -10.5, 300.7, 60.2, 460.0, 0.75, True),  # sticks out left and below: clipped
        (100, 200.0, 50.0, 260.0, 200.0, 0.40, False),  # invalid: never cut
        (400, 375.3, 46.2, 465.8, 227.1, 0.88, True),
        (400, 800.0, 10.0, 900.0, 200.0, 0.95, True),  # outside the 768 px wide frame: empty_box
        (800, 350.0, 66.0, 426.0, 218.0, 0.93, True),
        (800, 427.0, 79.0, 511.0, 246.0, 0.77, True),
        (800, 432.0, 249.0, 517.0, 418.0, 0.82, True),
        (5000, 10.0, 10.0, 60.0, 110.0, 0.99, True),  # past the last frame: frame_unreadable
    ],
    "v2.b": [(400, 375.3, 46.2, 465.8, 227.1, 0.88, True), (1100, 366.0, 62.0, 431.0, 192.0, 0.87, True)],
    "v4": [(100, 459.4, 68.6, 530.2, 209.5, 0.91, True)],
}


def write_workspace(root: Path, video: Path) -> None:
    """video_filter.parquet and detections/*.parquet in the agreed schema."""
    videos = [
        ("v1", str(video), "Oxford", True, "ok"),
        ("v2.b", str(video), "Paris", True, "ok"),
        ("v3", str(video), "Paris", False, "static"),
        ("v4", str(root / "missing.mp4"), "Oxford", True, "ok"),  # kept, but the file is gone
        ("v5", str(video), "Paris", True, "ok"),  # kept, detect never ran
    ]
    filt = pd.DataFrame(videos, columns=["video_id", "path", "city", "keep", "status"])
    filt = filt.assign(n_frames=1394, fps=10.0, width=768, height=432)
    filt.to_parquet(root / "video_filter.parquet", index=False)
    for vid, boxes in BOXES.items():
        rows = []
        for frame, x1, y1, x2, y2, score, valid in boxes:
            box = sum(1 for r in rows if r["frame"] == frame)
            keypoints = [float(v) for v in np.linspace(0, 1, 51)]
            keypoints[2] = math.nan  # a missing confidence reaches the JSON as null
            rows.append(
                dict(video_id=vid, frame=frame, box=box, x1=x1, y1=y1, x2=x2, y2=y2, score=score)
                | dict(keypoints=keypoints, valid=valid, status="ok" if valid else "low_score")
                | dict(detector="hog", keypoint_model="none", tracklet=None)
            )
        box_file.path_of(root, vid).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(box_file.path_of(root, vid), index=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, videos_dir) -> Path:
    root = tmp_path_factory.mktemp("det")
    write_workspace(root, videos_dir / VIDEO)
    build_shards(ShardSettings(max_samples=4), root)
    return root


def test_crops_equal_an_independent_cut(workspace, videos_dir):
    index = pd.read_parquet(workspace / "shards" / "index.parquet")
    samples = list(
        wds.WebDataset([str(workspace / "shards" / s) for s in index["shard"]], shardshuffle=False)
    )
    frames = reference_frames(videos_dir / VIDEO, {100, 400, 800, 1100})
    expected = {}
    for vid in ("v1", "v2.b"):
        for n, (frame, x1, y1, x2, y2, score, valid) in enumerate(BOXES[vid]):
            box = sum(1 for f, *_ in BOXES[vid][:n] if f == frame)
            if valid and frame in frames and x1 < 768:
                crop = frames[frame][
                    max(0, math.floor(y1)) : math.ceil(y2), max(0, math.floor(x1)) : math.ceil(x2)
                ]
                key = f"{vid.replace('.', '_')}_{frame:08d}_{box:03d}"
                expected[key] = (
                    cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(),
                    score,
                )
    assert [s["__key__"] for s in samples] == sorted(expected)
    assert len(expected) == 9 and index["n_samples"].tolist() == [4, 4, 1]
    for s in samples:
        jpg, score = expected[s["__key__"]]
        assert s["jpg"] == jpg
        meta = json.loads(s["json"])
        assert meta["score"] == score and meta["source_width"] == 768 and meta["source_height"] == 432
        assert len(meta["keypoints"]) == 51 and meta["keypoints"][2] is None
    clipped = json.loads(next(s["json"] for s in samples if s["__key__"] == "v1_00000100_002"))
    assert clipped["crop_xyxy"] == [0, 300, 61, 432] and clipped["city"] == "Oxford"


def test_every_valid_box_is_recorded_with_a_status(workspace):
    records = pd.read_parquet(workspace / "shards" / "samples.parquet").set_index("key")
    assert len(records) == 12  # the valid boxes of v1, v2.b and v4
    assert records.loc["v1_00000400_001", "status"] == "empty_box"
    assert records.loc["v1_00005000_000", "status"] == "frame_unreadable"
    assert records.loc["v4_00000100_000", "status"] == "video_unreadable"
    assert (records["status"] == "ok").sum() == 9
    assert "v1_00000100_003" not in records.index  # the invalid box


def test_stats_table_and_figures(workspace, capsys):
    summary = stats(StatsSettings(grid_size=3), workspace)
    printed = capsys.readouterr().out
    report = json.loads((workspace / "stats.json").read_text())
    # per video, the sampled frame with the most crops: v1 frame 100 or 800 (3), v2.b any frame (1)
    assert report["estimated_persons"] == 3 + 1 and summary["estimated_persons"] == 4
    assert report["images"] == 9 and report["videos"] == 2 and report["cities"] == 2
    assert report["crops_per_city"] == {"Oxford": 7, "Paris": 2}
    assert report["video_filter"]["reasons"] == {"ok": 4, "static": 1}
    assert report["detections"]["reasons"] == {"low_score": 1, "ok": 12}
    assert report["failed"] == {"empty_box": 1, "frame_unreadable": 1, "video_unreadable": 1}
    # box edges rounded outwards: v1 frame 100 box 1 is 65..306 (241 px), v2.b frame 1100 62..192
    assert (report["crop_height"]["min"], report["crop_height"]["max"]) == (130, 241)
    assert (report["crop_width"]["min"], report["crop_width"]["max"]) == (61, 121)  # 61: clipped at x=0
    assert "this build" in printed and "LUPerson (paper)" in printed
    for name in ("examples", "crop_height", "aspect_ratio", "score", "per_city", "drop_reasons"):
        with Image.open(workspace / "figures" / f"{name}.png") as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100
    assert report["figures"]["examples"].endswith("examples.png")


def test_verify_passes_on_a_clean_build(workspace):
    summary = verify_shards(VerifySettings(workers=1), workspace)
    assert summary["shards_bad"] == 0 and summary["samples"] == 9 and summary["samples_in_index"] == 9

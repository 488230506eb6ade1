"""The detect stage end to end with the offline HOG detector on real sample videos."""

from __future__ import annotations

import math

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import pipeline
from common.manifests import boxes as box_file
from common.media.frames import read_frames
from detect.person_rules import PersonRules, person_reason
from detect.settings import DetectSettings

VIDEOS = {"one-by-one-person-detection.mp4": 1394, "street-crossing.mp4": 671}


@pytest.fixture(scope="module")
def workspace(videos_dir, tmp_path_factory):
    """video_filter.parquet with two kept sample videos, a kept copy cut in half, a kept row whose
    file is gone, and a dropped row."""
    root = tmp_path_factory.mktemp("detect_ws")
    data = (videos_dir / "street-crossing.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # 299 of 671 frames left
    rows = [
        {"video_id": name.rsplit(".", 1)[0], "path": str(videos_dir / name), "keep": True, "n_frames": n}
        for name, n in VIDEOS.items()
    ]
    rows.append({"video_id": "gone", "path": "videos/gone.mp4", "keep": True, "n_frames": 500})
    rows.append({"video_id": "cut", "path": "cut.mp4", "keep": True, "n_frames": 671})
    rows.append(
        {
            "video_id": "pedestrians",
            "path": str(videos_dir / "pedestrians.mp4"),
            "keep": False,
            "n_frames": 96,
        }
    )
    table = pd.DataFrame(rows)
    table["status"] = np.where(table["keep"], "ok", "too_short")
    table.to_parquet(root / "video_filter.parquet")
    return root


@pytest.fixture(scope="module")
def run(workspace):
    args = ["detect", "--root", str(workspace), "--detector", "hog", "--keypoints", "none", "--workers", "2"]
    assert pipeline.main(args) == 0
    return workspace


def boxes(root, vid: str) -> pd.DataFrame:
    return pd.read_parquet(box_file.path_of(root, vid))


def test_one_file_per_kept_readable_video(run):
    files = sorted(p.name for p in box_file.files(run))
    assert files == ["cut.parquet", "one-by-one-person-detection.parquet", "street-crossing.parquet"]
    summary = pd.read_parquet(run / "detections.parquet").set_index("video_id")
    assert sorted(summary.index) == ["cut", "gone", "one-by-one-person-detection", "street-crossing"]
    assert summary.loc["cut", "frames_sampled"] == 3  # frames 0, 100, 200 of 0..600
    assert (summary.loc["cut", "status"], summary.loc["cut", "reason"]) == (
        "ok",
        "decoded 3 of 7 sampled frames",
    )
    assert summary.loc["one-by-one-person-detection", "frames_sampled"] == 14
    assert summary.loc["street-crossing", "frames_sampled"] == 7
    assert summary.loc["gone", "status"] == "error" and "cannot open" in summary.loc["gone", "reason"]
    for vid in ("one-by-one-person-detection", "street-crossing"):
        table = boxes(run, vid)
        assert summary.loc[vid, "boxes"] == len(table)
        assert summary.loc[vid, "valid_boxes"] == table["valid"].sum()
        assert pq.read_schema(box_file.path_of(run, vid)).metadata[b"keypoint_model"] == b"none"


def test_sampled_every_100th_frame(run):
    table = boxes(run, "one-by-one-person-detection")
    assert set(table["frame"]) <= set(range(0, 1301, 100))
    assert set(boxes(run, "street-crossing")["frame"]) <= set(range(0, 601, 100))


def test_hog_finds_persons(run):
    tables = [boxes(run, v) for v in ("one-by-one-person-detection", "street-crossing")]
    valid = pd.concat(tables).query("valid")
    assert len(valid) >= 5 and valid["frame"].nunique() >= 3
    assert (valid["score"] > DetectSettings().hog_min_score).all()
    assert (
        ((valid["y2"] - valid["y1"]) / (valid["x2"] - valid["x1"])).between(1.5, 5, inclusive="neither").all()
    )


def test_rows_follow_the_rules(run):
    rules = PersonRules(min_score=DetectSettings().hog_min_score)
    for vid in ("one-by-one-person-detection", "street-crossing"):
        table = boxes(run, vid)
        assert (table["detector"] == "hog").all() and (table["keypoint_model"] == "none").all()
        assert all(len(k) == 0 for k in table["keypoints"])  # --keypoints none: not computed
        expected = [person_reason(r.x1, r.y1, r.x2, r.y2, r.score, None, rules) for r in table.itertuples()]
        assert table["status"].tolist() == expected
        assert table["valid"].tolist() == [r == "ok" for r in expected]
        for _, frame in table.groupby("frame"):
            assert frame["box"].tolist() == list(range(len(frame)))
            assert frame["score"].is_monotonic_decreasing


def pyav_frame(path, index: int) -> np.ndarray:
    """Frame ``index`` decoded by a plain PyAV loop over every frame (no planning, no seeking)."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="bgr24")
    raise IndexError(index)


def test_crop_equals_independently_decoded_region(run, videos_dir):
    table = boxes(run, "street-crossing").query("valid").sort_values("score", ascending=False)
    best = table.iloc[0]
    x1, y1 = math.floor(best.x1), math.floor(best.y1)
    x2, y2 = math.ceil(best.x2), math.ceil(best.y2)
    path = videos_dir / "street-crossing.mp4"
    frame = dict(read_frames(path, [int(best.frame)]))[int(best.frame)]
    crop = frame[y1:y2, x1:x2]
    assert crop.shape[0] > 48 and crop.shape[1] > 48
    np.testing.assert_array_equal(crop, pyav_frame(path, int(best.frame))[y1:y2, x1:x2])


def test_rerun_skips_finished_videos(run):
    before = {p.name: p.stat().st_mtime_ns for p in box_file.files(run)}
    args = ["detect", "--root", str(run), "--detector", "hog", "--keypoints", "none", "--workers", "0"]
    assert pipeline.main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in box_file.files(run)} == before


def test_missing_filter_output_is_a_usage_error(tmp_path, capsys):
    assert pipeline.main(["detect", "--root", str(tmp_path), "--detector", "hog", "--keypoints", "none"]) == 2
    assert "run filter first" in capsys.readouterr().err

"""``detect --tracks`` on one-by-one-person-detection.mp4: tracklets that follow one person each.

The clip shows six people who cross a room one at a time. Their appearance windows below were
read by eye from every 5th frame (first and last frame showing any part of them); the gaps
between them are empty rooms. HOG (offline, no weights) finds these people poorly, so the runs
here keep its boxes above 0.5 (``--hog-min-score 0.5``, not the 1.0 default) and skip
keypoints; the tracker settings are the defaults.

``python tests/test_tracklets_detect.py --make`` runs the same detection and writes
``docs/tracklets_one_by_one.jpg``: one row per tracklet, its crops in frame order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline
from common.manifests import boxes as box_file

REPO = Path(__file__).resolve().parent.parent
CLIP = "one-by-one-person-detection.mp4"
# person -> (first, last) frame where any part of them is visible, by eye on every 5th frame
PEOPLE = {
    "grey cardigan": (60, 200),
    "black hoodie": (225, 450),
    "blond, black clothes": (505, 700),
    "black t-shirt": (745, 865),
    "grey top, dark hair": (925, 1205),
    "grey shirt": (1235, 1355),
}
MARGIN = 5  # frames: the by-eye windows are read on every 5th frame
HOG_ARGS = ["--detector", "hog", "--keypoints", "none", "--hog-min-score", "0.5", "--tracks"]


def workspace(root: Path, videos: dict[str, tuple[Path, int]]) -> Path:
    """``video_filter.parquet`` keeping ``videos`` (id -> (file, frames to use))."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        {"video_id": vid, "path": str(path), "keep": True, "n_frames": n, "status": "ok"}
        for vid, (path, n) in videos.items()
    ]
    pd.DataFrame(rows).to_parquet(root / "video_filter.parquet")
    return root


def detect(root: Path, *extra: str) -> None:
    assert pipeline.main(["detect", "--root", str(root), *HOG_ARGS, *extra]) == 0


def person_at(frame: int) -> set[str]:
    return {name for name, (a, b) in PEOPLE.items() if a - MARGIN <= frame <= b + MARGIN}


def tracklet_frames(table: pd.DataFrame) -> dict[str, list[int]]:
    """Tracklet -> frames of its valid crops (what build-shards cuts)."""
    valid = table[table["valid"] & table["tracklet"].notna()]
    return {k: sorted(g["frame"].tolist()) for k, g in valid.groupby("tracklet")}


def contact_sheet(video: Path, table: pd.DataFrame, out: Path, height: int = 96) -> Path:
    """One row per tracklet (its valid crops in frame order, each ``height`` px high), labelled."""
    import cv2

    from common.media.frames import read_frames

    valid = table[table["valid"] & table["tracklet"].notna()].sort_values(["tracklet", "frame"])
    frames = dict(read_frames(video, sorted(set(valid["frame"]))))
    rows = []
    groups = sorted(
        valid.groupby("tracklet"), key=lambda g: [int(n) for n in g[0].split("_t", 1)[1].split("_")]
    )
    for name, group in groups:
        crops = []
        for r in group.itertuples():
            crop = frames[r.frame][int(r.y1) : int(np.ceil(r.y2)), int(r.x1) : int(np.ceil(r.x2))]
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * height / crop.shape[0])), height))
            cv2.putText(crop, str(r.frame), (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
            crops.append(crop)
        label = np.full((height, 84, 3), 255, np.uint8)
        cv2.putText(
            label, "t" + str(name).split("_t", 1)[1], (4, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1
        )
        rows.append(np.hstack([label, *crops]))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack(
        [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    )
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return out


@pytest.fixture(scope="module")
def tracked_root(videos_dir, tmp_path_factory) -> Path:
    root = workspace(tmp_path_factory.mktemp("tracks"), {"obo": (videos_dir / CLIP, 1394)})
    detect(root, "--workers", "0")
    return root


@pytest.fixture(scope="module")
def tracked(tracked_root) -> pd.DataFrame:
    return pd.read_parquet(box_file.path_of(tracked_root, "obo"))


def test_build_shards_carries_the_tracklets(tracked_root, tracked):
    """Every valid box becomes a crop; those of a tracklet name it, in the JSON and tracklets.parquet."""
    import json

    import webdataset as wds

    from common.manifests import tracklets
    from shards.build import build_shards
    from shards.settings import ShardSettings

    summary = build_shards(ShardSettings(workers=1), tracked_root)
    valid = tracked[tracked["valid"]]
    assert summary["samples"] == len(valid) and summary["tracklets"] == len(tracklet_frames(tracked))
    listed = tracklets.read(tracked_root / "shards")
    assert {k: sorted(g["frame"]) for k, g in listed.groupby("tracklet")} == tracklet_frames(tracked)
    shards = sorted((tracked_root / "shards").glob("lup-*.tar"))
    meta = {
        s["__key__"]: json.loads(s["json"])
        for s in wds.WebDataset([str(p) for p in shards], shardshuffle=False)
    }
    assert {k: m["tracklet"] for k, m in meta.items() if "tracklet" in m} == dict(
        zip(listed["key"], listed["tracklet"], strict=True)
    )


def test_no_tracklet_mixes_two_people(tracked):
    tracklets = tracklet_frames(tracked)
    assert len(tracklets) >= 6
    for name, frames in tracklets.items():
        people = set().union(*(person_at(f) for f in frames))
        assert len(people) == 1, (name, frames, people)  # one person, and no crop in an empty room
        assert len(frames) <= 4 and min(np.diff(frames), default=10) >= 10  # K and M defaults
    followed = {next(iter(person_at(f[0]))) for f in tracklets.values()}
    # HOG misses the blond woman's whole body on every tracked frame (docs/detect.md)
    assert followed == set(PEOPLE) - {"blond, black clothes"}


def test_sampled_frames_keep_their_plain_rows(tracked, videos_dir, tmp_path):
    """Every box of the sampled frames is there as without --tracks; extra rows are valid crops."""
    root = workspace(tmp_path, {"obo": (videos_dir / CLIP, 1394)})
    args = ["detect", "--root", str(root), *HOG_ARGS[:-1], "--workers", "0"]
    assert pipeline.main(args) == 0
    plain = pd.read_parquet(box_file.path_of(root, "obo"))
    assert plain["tracklet"].isna().all()
    sampled = tracked[tracked["frame"] % 100 == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(sampled.drop(columns="tracklet"), plain.drop(columns="tracklet"))
    extra = tracked[tracked["frame"] % 100 != 0]
    assert extra["valid"].all() and extra["tracklet"].notna().all() and len(extra) > 0
    assert tracked["tracklet"].dropna().str.match(r"^obo_t[0-9]+_[0-9]+$").all()


def test_track_ids_are_stable_across_runs_and_workers(videos_dir, tmp_path):
    """Two videos (the first 230 frames of the clip, under two ids) with 0 and 2 decoding workers and
    other batch sizes: the same files byte for byte, the same tracklets under either id."""
    clip = videos_dir / CLIP
    one = workspace(tmp_path / "one", {"a": (clip, 230), "b": (clip, 230)})
    two = workspace(tmp_path / "two", {"a": (clip, 230), "b": (clip, 230)})
    detect(one, "--workers", "0")
    detect(two, "--workers", "2", "--batch-size", "7")
    for vid in ("a", "b"):
        assert box_file.path_of(one, vid).read_bytes() == (box_file.path_of(two, vid)).read_bytes()
    a, b = (pd.read_parquet(box_file.path_of(one, v)) for v in ("a", "b"))
    assert a["tracklet"].notna().sum() > 0
    assert a["tracklet"].str.removeprefix("a_").equals(b["tracklet"].str.removeprefix("b_"))


def test_crops_are_picked_far_from_the_anchor_and_apart():
    from detect.tracks import pick_crops

    frames = [75, 80, 85, 90, 110, 115, 120, 125]
    assert pick_crops(100, frames, 4, 10) == [75, 85, 125]
    assert pick_crops(100, frames, 1, 10) == [] and pick_crops(100, [95, 105], 4, 10) == []


def test_windows_must_not_overlap():
    from common.errors import SettingsError
    from detect.settings import DetectSettings, TrackSettings

    with pytest.raises(SettingsError, match="track-window"):
        DetectSettings(tracks=True, frame_step=100, track=TrackSettings(window=50))
    assert DetectSettings(tracks=False, frame_step=100, track=TrackSettings(window=50)).track.window == 50


def test_track_ids_are_the_same_on_ray(videos_dir, tmp_path, local_ray):
    """``--engine ray`` (one actor per CPU) writes the same files as the local engine."""
    clip = videos_dir / CLIP
    local = workspace(tmp_path / "local", {"a": (clip, 230)})
    on_ray = workspace(tmp_path / "ray", {"a": (clip, 230)})
    detect(local, "--workers", "0")
    detect(on_ray, "--engine", "ray", "--workers", "1")
    tables = [pd.read_parquet(box_file.path_of(root, "a")) for root in (local, on_ray)]
    pd.testing.assert_frame_equal(*tables)
    assert tables[0]["tracklet"].notna().sum() > 0


def make(out: Path = REPO / "docs" / "tracklets_one_by_one.jpg") -> Path:
    """Detect on the clip in a temporary workspace and write the contact sheet."""
    import tempfile

    video = REPO.parent / "shared" / "data" / "videos" / CLIP
    with tempfile.TemporaryDirectory() as tmp:
        root = workspace(Path(tmp), {"obo": (video, 1394)})
        detect(root, "--workers", "0")
        table = pd.read_parquet(box_file.path_of(root, "obo"))
    return contact_sheet(video, table, out)


def test_contact_sheet(tracked, videos_dir, tmp_path):
    import cv2

    sheet = contact_sheet(videos_dir / CLIP, tracked, tmp_path / "sheet.jpg")
    image = cv2.imread(str(sheet))
    assert image.shape[0] == len(tracklet_frames(tracked)) * 98 and sheet.stat().st_size < 300_000


if __name__ == "__main__" and "--make" in sys.argv:
    print(make())

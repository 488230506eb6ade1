"""build-shards --from-dets with calibration, on the sample footage.

Released-format detections are made here the way a release is: a person detector (OpenCV's HOG at
the video's own size, boxes scoring >= 1.0) on chosen frames of the original file. Calibration then
runs its own detections (HOG on frames resized to 540 px, all boxes), so the two disagree in detail
as the release's YOLO boxes and a re-downloaded video would. Videos of one build:

* ``moving``: street-crossing, every third frame re-encoded (10 fps: walkers move between frames),
  unchanged -> scale 1, offset 0;
* ``shifted``: the same file, the released frame ids shifted by one -> offset -1, the same crops;
* ``small``: pedestrians (1920x1080) re-encoded at 640x360, the boxes found on the original ->
  scale 1/3, crops matching the original's cut, resized;
* ``swapped``: concourse-walkers under the ``moving`` boxes -> unverified, nothing cut.

Then the build is killed part way in a new root and rerun: the same shards, byte for byte. Apart
from the build: a film's frame (pedestrians cropped to 2.39:1) released at 1280x536, a height on
no ladder, and downloaded at 1920x804 -> scale 1.5, found from the widths.
"""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import webdataset as wds
from processes import kill_group_when
from reference import reference_frames

from common.detectors.build import build_detector
from common.media.frames import read_frames
from shards.build import build_shards
from shards.release import calibrate, import_dets
from shards.settings import Calibration, ShardSettings
from shards.write.faces import Encoding

REPO = Path(__file__).resolve().parent.parent
RELEASE_MIN_SCORE = 1.0  # the "release" keeps confident HOG boxes only
CALIBRATION = {"calibration": Calibration(height=540, frames=3)}  # 540: quicker than 720 on 2 cores
MOVING_IDS = (16, 40, 64, 88, 112)  # released frame ids (1-based) of the 120-frame moving clip
PEDESTRIAN_IDS = (25, 55, 85)  # of pedestrians.mp4 (96 frames)


def reencode(
    src: Path, dst: Path, height: int, n_frames: int, step: int = 1, rows: tuple[int, int] | None = None
) -> Path:
    """Every ``step``-th frame of ``src`` (``n_frames`` of them), cut to ``rows`` when given, resized
    to ``height``, H.264 at 25 fps."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = None
        for i, frame in enumerate(inp.decode(video=0)):
            if i % step or i // step >= n_frames:
                continue
            img = frame.to_ndarray(format="bgr24")[slice(*rows) if rows else slice(None)]
            width = round(img.shape[1] * height / img.shape[0] / 2) * 2
            if stream is None:
                stream = out.add_stream("libx264", rate=25, options={"crf": "18", "preset": "ultrafast"})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            img = cv2.resize(
                img, (width, height), interpolation=cv2.INTER_AREA
            )  # no-op when the size is kept
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(stream.encode())
    return dst


def release(video: Path, frame_ids: tuple[int, ...], shift: int = 0) -> dict:
    """Released-format detections of ``video``: ``{frame_id + shift: [(obj_idx, {"bbox", "score"})]}``."""
    detector = build_detector("hog")
    frames = dict(read_frames(video, [f - 1 for f in frame_ids]))
    dets = {}
    for f in frame_ids:
        found = detector([frames[f - 1]])[0]
        kept = found[found[:, 4] >= RELEASE_MIN_SCORE]
        dets[f + shift] = [(i, {"bbox": d[:4].astype(np.float32), "score": d[4]}) for i, d in enumerate(kept)]
    return dets


def make_workspace(base: Path, videos_dir: Path) -> dict:
    """The clips, ``videos.parquet`` and ``dets.pkl`` of the four cases under ``base``."""
    moving = reencode(videos_dir / "street-crossing.mp4", base / "moving.mp4", 360, 120, step=3)
    small = reencode(videos_dir / "pedestrians.mp4", base / "small.mp4", 360, 96)
    moving_dets = release(moving, MOVING_IDS)
    videos = {
        "usa+boston+moving": (moving, moving_dets),
        "usa+boston+shifted": (moving, release(moving, MOVING_IDS, shift=1)),
        "uk+london+small": (small, release(videos_dir / "pedestrians.mp4", PEDESTRIAN_IDS)),
        "fr+paris+swapped": (videos_dir / "concourse-walkers.mp4", moving_dets),
    }
    root = base / "root"
    root.mkdir()
    rows = [(v.split("+")[2], v, str(path), "ok", "") for v, (path, _) in videos.items()]
    columns = ["video_id", "vname", "path", "status", "reason"]
    pd.DataFrame(rows, columns=columns).to_parquet(root / "videos.parquet", index=False)
    with open(base / "dets.pkl", "wb") as f:
        pickle.dump({v: d for v, (_, d) in videos.items()}, f)
    return {"base": base, "root": root, "videos": videos, "dets": str(base / "dets.pkl")}


def settings(dets: str, **extra) -> ShardSettings:
    return ShardSettings(from_dets=dets, max_samples=4, workers=2, **CALIBRATION, **extra)


def samples_of(root: Path) -> dict[str, dict]:
    index = pd.read_parquet(root / "shards" / "index.parquet")
    urls = [str(root / "shards" / s) for s in index["shard"]]
    return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}


@pytest.fixture(scope="module")
def built(tmp_path_factory, videos_dir):
    ws = make_workspace(tmp_path_factory.mktemp("calibrate"), videos_dir)
    summary = build_shards(settings(ws["dets"]), ws["root"])
    report = json.loads((ws["root"] / "dets_report.json").read_text())
    calibration = {v["vname"].split("+")[2]: v for v in report["calibration"]["videos"]}
    return ws | {
        "summary": summary,
        "report": report,
        "calibration": calibration,
        "samples": samples_of(ws["root"]),
    }


def crops_of(built: dict, video_id: str) -> dict[str, tuple[dict, np.ndarray]]:
    out = {}
    for key, s in built["samples"].items():
        if key.startswith(video_id + "_"):
            out[key] = (
                json.loads(s["json"]),
                cv2.imdecode(np.frombuffer(s["jpg"], np.uint8), cv2.IMREAD_COLOR),
            )
    return out


def test_unchanged_video_calibrates_to_scale_1_offset_0(built):
    moving = built["calibration"]["moving"]
    assert (moving["outcome"], moving["scale"], moving["offset"]) == ("verified", 1.0, 0)
    assert moving["agreement"] >= 0.4 and moving["agreement"] - moving["runner_up"]["agreement"] >= 0.1
    assert len(moving["frames"]) == 3 and set(moving["frames"]) <= set(MOVING_IDS)
    crops = crops_of(built, "moving")
    n_boxes = sum(len(v) for v in built["videos"]["usa+boston+moving"][1].values())
    assert len(crops) == n_boxes >= 5
    for meta, _ in crops.values():
        assert meta["frame"] == meta["frame_id"] - 1
        assert meta["geometry"] == {
            "calibration": "verified",
            "detector": "hog",
            "agreement": moving["agreement"],
            "scale": 1.0,
            "offset": 0,
        }


def test_shifted_frame_ids_are_found_as_offset_minus_1(built):
    shifted = built["calibration"]["shifted"]
    assert (shifted["outcome"], shifted["scale"], shifted["offset"]) == ("verified", 1.0, -1)
    assert shifted["agreement"] - shifted["offset_runner_up"]["agreement"] >= 0.1
    moving = {(m["frame"], m["obj_idx"]): s for m, s in crops_of(built, "moving").values()}
    shifted_crops = crops_of(built, "shifted")
    assert len(shifted_crops) == len(moving)
    for meta, crop in shifted_crops.values():
        assert meta["frame"] == meta["frame_id"] - 2 and meta["geometry"]["offset"] == -1
        assert np.array_equal(crop, moving[meta["frame"], meta["obj_idx"]])  # the frame the box was found on


def test_lower_resolution_copy_is_rescaled_and_cut_at_the_right_places(built, videos_dir):
    small = built["calibration"]["small"]
    assert (small["outcome"], small["offset"]) == ("verified", 0)
    assert small["scale"] == pytest.approx(1 / 3, abs=1e-6) and small["frame_size"] == [640, 360]
    crops = crops_of(built, "small")
    dets = built["videos"]["uk+london+small"][1]
    assert len(crops) == sum(len(v) for v in dets.values()) >= 10
    original = reference_frames(videos_dir / "pedestrians.mp4", {f - 1 for f in PEDESTRIAN_IDS})
    resized = {i: cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for i, f in original.items()}
    assert_cut_at(crops.values(), resized, 1 / 3, small["scale"])


def assert_cut_at(crops, frames: dict[int, np.ndarray], scale: float, recorded: float) -> None:
    """Each crop is the released box times ``scale`` on its frame of ``frames`` (an independent cut
    of the original, resized to the copy's size), not half a box beside it."""
    diffs, controls = [], []
    for meta, crop in crops:
        x1, y1, x2, y2 = np.round(np.array(meta["bbox"], np.float64) * scale).astype(int)
        assert meta["crop_xyxy"] == [x1, y1, x2, y2] and meta["geometry"]["scale"] == recorded
        frame = frames[meta["frame"]]
        diffs.append(np.abs(crop.astype(int) - frame[y1:y2, x1:x2]).mean())
        dx = max((x2 - x1) // 2, 4)  # the comparison can fail: half a box to the side is another place
        beside = frame[y1:y2, x1 - dx : x2 - dx] if x1 >= dx else frame[y1:y2, x1 + dx : x2 + dx]
        controls.append(np.abs(crop.astype(int) - beside).mean())
    assert max(diffs) < 5 < 12 < min(controls), (diffs, controls)


def test_swapped_video_is_unverified_and_nothing_is_cut(built):
    swapped = built["calibration"]["swapped"]
    assert swapped["outcome"] == "unverified" and swapped["cut_with"] is None
    assert swapped["agreement"] < 0.4 or swapped["agreement"] - swapped["runner_up"]["agreement"] < 0.1
    assert not crops_of(built, "swapped")
    records = pd.read_parquet(built["root"] / "shards" / "samples.parquet")
    mine = records[records["video_id"] == "swapped"]
    assert len(mine) and set(mine["status"]) == {"unverified"}
    assert mine["reason"].str.startswith("calibration unverified: ").all()
    report = built["report"]
    assert report["calibration"]["outcomes"] == {"verified": 3, "unverified": 1, "mismatch": 0, "not_run": 0}
    assert report["calibration"]["rescaled"] == 1 and report["calibration"]["shifted"] == 1
    assert report["videos"]["not_cut"] == {"unverified": 1}
    assert report["crops"]["not_written"] == {"unverified": len(mine)}
    assert built["summary"]["regenerate"]["calibration"]["unverified"] == 1


def test_rerun_after_a_kill_gives_the_same_shards(built):
    root = built["base"] / "killed"
    root.mkdir()
    shutil.copy(built["root"] / "videos.parquet", root / "videos.parquet")
    flags = ["--from-dets", built["dets"], "--root", str(root), "--max-samples", "4", "--workers", "2"]
    flags += ["--calibrate-height", "540", "--calibrate-frames", "3"]
    command = [sys.executable, str(REPO / "pipeline.py"), "build-shards", *flags]
    status = kill_group_when(command, REPO, lambda _: (root / "shards" / "lup-000002.tar").exists(), 120)
    assert status == -signal.SIGKILL, "the build ended before the kill"
    assert not (root / "shards" / "index.parquet").exists()
    cache = calibrate.cache_file(root / calibrate.CACHE, "moving")
    stored = cache.stat().st_mtime_ns  # its first crops are in a shard
    summary = build_shards(settings(built["dets"]), root)
    assert summary["shards_reused"] >= 2
    assert cache.stat().st_mtime_ns == stored  # reused, not measured again
    names = sorted(p.name for p in (built["root"] / "shards").glob("lup-*.tar"))
    assert names == sorted(p.name for p in (root / "shards").glob("lup-*.tar")) and len(names) > 3
    for name in names + ["index.parquet", "samples.parquet"]:
        assert (root / "shards" / name).read_bytes() == (built["root"] / "shards" / name).read_bytes(), name
    assert json.loads((root / "dets_report.json").read_text()) == built["report"]


def test_forbidden_rescale_is_a_mismatch_and_cut_unverified_cuts_as_without_calibration(built, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(built["root"] / "videos.parquet", root / "videos.parquet")
    fixed = Calibration(frames=3, height=540, rescale=False)
    for cal, status in ((fixed, "mismatch"), (replace(fixed, cut_unverified=True), "resolution_mismatch")):
        tasks, _ = import_dets.plan(built["dets"], root, None, cal)
        small = next(t for t in tasks if t.context["video_id"] == "small")
        records = [r.record for r in import_dets.run(small, Encoding(95))]
        assert {r["status"] for r in records} == {status}, records[0]
    assert "scale 0.333333 wins clearly but only 1 is allowed" in calibrate.cached(small.context)["why"]
    assert "beyond the 640x360 frame" in records[0]["reason"]  # cut unscaled, as --calibrate none: refused


def test_a_film_released_at_a_height_on_no_ladder_verifies_by_its_width(tmp_path, videos_dir):
    """A 2.39:1 film's "720p" is 1280x536 and its "1080p" 1920x804: boxes found on the first, cut
    from the second, are at scale 1.5 = 1920 / 1280, which no ladder height gives (804 / 536)."""
    rows, src = (138, 942), videos_dir / "pedestrians.mp4"  # 1920x1080 cut to a film's 1920x804
    video = reencode(src, tmp_path / "1080p.mp4", 804, 96, rows=rows)
    dets = {"us+la+film": release(reencode(src, tmp_path / "720p.mp4", 536, 96, rows=rows), PEDESTRIAN_IDS)}
    (root := tmp_path / "root").mkdir()
    row = [("film", "us+la+film", str(video), "ok", "")]
    pd.DataFrame(row, columns=["video_id", "vname", "path", "status", "reason"]).to_parquet(
        root / "videos.parquet"
    )
    (tmp_path / "dets.pkl").write_bytes(pickle.dumps(dets))
    tasks, _ = import_dets.plan(str(tmp_path / "dets.pkl"), root, None, Calibration(frames=3, height=540))
    results = import_dets.run(tasks[0], Encoding(95))
    film = calibrate.cached(tasks[0].context)
    assert (film["outcome"], film["scale"], film["offset"], film["frame_size"]) == (
        "verified",
        1.5,
        0,
        [1920, 804],
    )
    assert film["agreement"] - film["runner_up"]["agreement"] >= 0.1
    assert len(results) == sum(len(v) for v in dets["us+la+film"].values()) >= 10
    crops = [
        (json.loads(r.files["json"]), cv2.imdecode(np.frombuffer(r.files["jpg"], np.uint8), 1))
        for r in results
    ]
    original = reference_frames(src, {f - 1 for f in PEDESTRIAN_IDS})
    assert_cut_at(crops, {i: f[slice(*rows)] for i, f in original.items()}, 1.5, 1.5)

"""build-shards --from-dets edge cases (a bundled dets.pkl, stated sizes, malformed and unsafe
pickles, usage errors) and export-lmdb's keys for a folder tree, checked against the release's
``LUP/convert_lmdb.py`` walk re-implemented here.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections import defaultdict
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pandas as pd
import pytest
import webdataset as wds

import pipeline
from common.errors import UsageError
from shards.build import build_shards
from shards.release.export_lmdb import export_lmdb
from shards.settings import ExportLmdbSettings, ShardSettings

CROSSING = "street-crossing.mp4"  # 640x360, 671 frames
ONE_BY_ONE = "one-by-one-person-detection.mp4"  # 768x432, 1,394 frames


def det(x1, y1, x2, y2):
    return {"bbox": np.array([x1, y1, x2, y2], np.float64), "score": 0.8}


def write_videos(root: Path, videos_dir: Path) -> None:
    """videos.parquet as crawl --from-vnames writes it (absolute paths work: readers use root / path)."""
    rows = [
        ("street-crossing", "usa+boston+street-crossing", str(videos_dir / CROSSING)),
        (
            "one-by-one-person-detection",
            "usa+newyork+one-by-one-person-detection",
            str(videos_dir / ONE_BY_ONE),
        ),
    ]
    df = pd.DataFrame(rows, columns=["video_id", "vname", "path"]).assign(status="ok", reason="")
    root.mkdir(parents=True, exist_ok=True)
    df.to_parquet(root / "videos.parquet", index=False)


def frame_at(video: Path, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    for _ in range(index + 1):
        ok, frame = cap.read()
        assert ok
    cap.release()
    return frame


class RunsCode:
    """Unpickling this would run a shell command (what a hostile pickle does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bundle_with_stated_sizes_and_malformed_entries(tmp_path, videos_dir):
    root = tmp_path / "root"
    write_videos(root, videos_dir)
    bundle = {
        "usa+boston+street-crossing.mp4": {  # a key with the file suffix still matches its line
            3: [(0, det(40.0, 60.0, 160.0, 400.6))],  # in 1280x720 pixels (--dets-size): halved
            0: [(0, det(1.0, 1.0, 20.0, 50.0))],  # frame ids are 1-based
            7: [(1, {"bbox": np.array([np.nan, 1.0, 20.0, 50.0])}), (2, {"bbox": [1.0, 2.0]})],
            9: [("x", det(1.0, 1.0, 20.0, 50.0)), (4, det(1.0, 1.0, 20.0, 50.0)), (4, det(9.0, 9, 9, 9))],
            "note": "unknown string keys are ignored",
        },
        # stated 640x480 (4:3) for a 768x432 (16:9) video: cannot be rescaled
        "usa+newyork+one-by-one-person-detection": {"size": (640, 480), 101: [(0, det(10.0, 10, 50, 90))]},
        "uk+london+street-crossing": {3: [(0, det(1.0, 1.0, 20.0, 50.0))]},  # the same YouTube id again
        "usa+street-crossing": {3: [(0, det(1.0, 1.0, 20.0, 50.0))]},  # not country+city+id
        "usa+ny+notadict": [(3, det(1.0, 1.0, 20.0, 50.0))],
    }
    with open(tmp_path / "dets.pkl", "wb") as f:
        pickle.dump(bundle, f)
    cfg = ShardSettings(
        from_dets=str(tmp_path / "dets.pkl"), dets_size="1280x720", workers=1, calibrate="none"
    )
    summary = build_shards(cfg, root)

    records = pd.read_parquet(root / "shards" / "samples.parquet").set_index("key")
    assert records["status"].to_dict() == {
        "street-crossing_00000003_000": "ok",
        "street-crossing_00000000_000": "bad_frame",
        "street-crossing_00000007_001": "bad_box",
        "street-crossing_00000007_002": "bad_box",
        "street-crossing_00000009_004": "ok",
        "one-by-one-person-detection_00000101_000": "resolution_mismatch",
    }
    assert "another aspect ratio" in records.loc["one-by-one-person-detection_00000101_000", "reason"]
    (sample,) = [
        s
        for s in wds.WebDataset(str(root / "shards" / "lup-000000.tar"), shardshuffle=False)
        if s["__key__"] == "street-crossing_00000003_000"
    ]
    x1, y1, x2, y2 = np.round(np.array([40.0, 60.0, 160.0, 400.6]) * 0.5).astype(int)  # 20 30 80 200
    crop = frame_at(videos_dir / CROSSING, 2)[y1:y2, x1:x2]
    assert sample["jpg"] == cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    meta = json.loads(sample["json"])
    assert meta["crop_xyxy"] == [20, 30, 80, 200] and meta["dets_size"] == [1280, 720]

    report = json.loads((root / "dets_report.json").read_text())
    assert report["videos"]["not_cut"] == {
        "bad_dets": 1,
        "bad_vname": 1,
        "duplicate_video": 1,
        "resolution_mismatch": 1,
    }
    assert report["videos"]["rescaled"] == 1 and report["videos"]["cut"] == 1
    assert report["crops"]["malformed_entries"] == 1 and report["crops"]["duplicate_boxes"] == 1
    assert summary["regenerate"]["crops"]["written"] == 2
    reasons = {v["vname"]: v["reason"] for v in report["videos_not_cut"]}
    assert "already given as usa+boston+street-crossing" in reasons["uk+london+street-crossing"]
    assert "expected a dict" in reasons["usa+ny+notadict"]


def test_unsafe_pickles_are_refused(tmp_path, videos_dir):
    root = tmp_path / "root"
    write_videos(root, videos_dir)
    marker = tmp_path / "pwned"
    with open(tmp_path / "dets.pkl", "wb") as f:
        pickle.dump({"usa+boston+street-crossing": RunsCode(marker)}, f)
    with pytest.raises(UsageError, match="refusing to load"):
        build_shards(ShardSettings(from_dets=str(tmp_path / "dets.pkl"), workers=1, calibrate="none"), root)
    folder = tmp_path / "dets"
    folder.mkdir()
    with open(folder / "usa+newyork+one-by-one-person-detection.pkl", "wb") as f:
        pickle.dump({1: [(0, {"bbox": RunsCode(marker)})]}, f)
    with open(folder / "usa+boston+street-crossing.pkl", "wb") as f:
        pickle.dump({3: [(0, det(20.0, 30.0, 80.0, 200.0))]}, f)
    summary = build_shards(ShardSettings(from_dets=str(folder), workers=1, calibrate="none"), root)
    assert not marker.exists()
    assert summary["samples"] == 1
    report = json.loads((root / "dets_report.json").read_text())
    (bad,) = report["videos_not_cut"]
    assert bad["status"] == "bad_dets" and "refusing to load" in bad["reason"] and "system" in bad["reason"]


def test_usage_errors_are_one_line(tmp_path, capsys, videos_dir):
    (tmp_path / "dets").mkdir()
    with open(tmp_path / "dets" / "usa+boston+street-crossing.pkl", "wb") as f:
        pickle.dump({3: [(0, det(20.0, 30.0, 80.0, 200.0))]}, f)
    root = str(tmp_path / "root")
    cases = [
        (
            ["build-shards", "--from-dets", str(tmp_path / "dets"), "--from-images", str(tmp_path)],
            "give one of",
        ),
        (["build-shards", "--from-dets", str(tmp_path / "nope.pkl")], "does not exist"),
        (["build-shards", "--from-dets", str(tmp_path / "dets")], "crawl --from-vnames"),
        (["build-shards", "--from-dets", str(tmp_path / "dets"), "--dets-size", "1280"], "WIDTHxHEIGHT"),
        (["build-shards", "--from-images", str(tmp_path), "--dets-size", "1280x720"], "--from-dets only"),
        (["export-lmdb"], "run build-shards first"),
    ]
    for args, message in cases:
        assert pipeline.main([*args, "--root", root]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)


def convert_lmdb_walk(base: Path) -> dict[str, bytes]:
    """LUP/convert_lmdb.py's loop: sorted countries, cities, videos, image names -> key -> bytes."""
    data = {}
    for i, country in enumerate(sorted(os.listdir(base))):
        for j, city in enumerate(sorted(os.listdir(base / country))):
            for k, vid in enumerate(sorted(os.listdir(base / country / city))):
                names = sorted(x for x in os.listdir(base / country / city / vid) if x.endswith("jpg"))
                for m, name in enumerate(names):
                    data[f"{i:02d}_{j:02d}_{k:04d}_{m:08d}"] = (
                        base / country / city / vid / name
                    ).read_bytes()
    return data


def test_extracted_tree_exports_with_the_release_keys(tmp_path, unlabeled_dir):
    """A tree <country>/<city>/<video>/*.jpg (the release's extracted layout) keeps its official keys."""
    tree = tmp_path / "luperson"
    layout = {
        "usa/newyork/vidB": "MIT",
        "usa/newyork/vidA": "CUHK",
        "uk/london/v1": "TownCentre",
        "usa/boston/z": "MIT",
    }
    for n, (folder, source) in enumerate(layout.items()):
        (tree / folder).mkdir(parents=True)
        for name in sorted(os.listdir(unlabeled_dir / source))[n * 5 : n * 5 + 5]:
            shutil.copy(unlabeled_dir / source / name, tree / folder / name)
    root = tmp_path / "root"
    build_shards(ShardSettings(from_images=str(tree), workers=1, max_samples=7), root)
    summary = export_lmdb(ExportLmdbSettings(), root)
    assert (summary["images"], summary["countries"], summary["cities"], summary["videos"]) == (20, 2, 3, 4)

    expected = convert_lmdb_walk(tree)
    with open(root / "lup_lmdb" / "keys.pkl", "rb") as f:
        keys = pickle.load(f)["keys"]
    assert keys == list(expected)
    env = lmdb.open(
        str(root / "lup_lmdb" / "lmdb"), readonly=True, lock=False, readahead=False, meminit=False
    )
    with env.begin() as txn:
        assert {k: bytes(txn.get(k.encode("ascii"))) for k in keys} == expected
    env.close()

    # and our own LMDB importer reads the export back: same keys, same bytes
    again = tmp_path / "again"
    build_shards(ShardSettings(from_lmdb=str(root / "lup_lmdb"), workers=1), again)
    samples = {
        s["__key__"]: s["jpg"]
        for s in wds.WebDataset(str(again / "shards" / "lup-000000.tar"), shardshuffle=False)
    }
    assert samples == expected
    grouped = defaultdict(int)
    for k in keys:
        grouped[k[:5]] += 1
    assert dict(grouped) == {"00_00": 5, "01_00": 5, "01_01": 10}  # uk/london; usa/boston; usa/newyork

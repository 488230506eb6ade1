"""Regenerate LUPerson end to end, as a user runs it: ``vnames.txt`` and per-video detection pickles
in the release's formats for the sample footage, ``crawl --from-vnames`` (from a loopback HTTP
server), ``build-shards --from-dets`` and ``export-lmdb``; then every crop, the report and the LMDB
are checked against independent references (OpenCV's sequential decode, the release's loader).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import pickle
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pandas as pd
import pytest
import webdataset as wds
from reference import reference_frames

from shards.release.export_lmdb import export_lmdb
from shards.settings import ExportLmdbSettings

REPO = Path(__file__).resolve().parent.parent
SOURCES = {  # vnames.txt line -> sample file served on loopback (None: the server has no such file)
    "usa+newyork+one-by-one-person-detection": "one-by-one-person-detection.mp4",  # 768x432
    "usa+newyork+concourse-walkers": "concourse-walkers.mp4",  # 640x360
    "uk+london+pedestrians": "pedestrians.mp4",  # 1920x1080, 96 frames
    "usa+boston+street-crossing": "street-crossing.mp4",  # 640x360
    "uk+london+doesnotexist": None,
}
SIZES = {
    "one-by-one-person-detection": (768, 432),
    "pedestrians": (1920, 1080),
    "street-crossing": (640, 360),
}


def det(x1, y1, x2, y2, score=0.9):
    return {
        "bbox": np.array([x1, y1, x2, y2], np.float32),
        "score": np.float32(score),
        "kpts": np.zeros((17, 3)),
    }


# Released-format detections: {frame_id (1-based): [(obj_idx, {"bbox": ...}), ...]}.
DETS = {
    "usa+newyork+one-by-one-person-detection": {
        101: [(0, det(459.4, 68.6, 530.2, 209.5)), (1, det(351.0, 65.0, 472.0, 306.0))],
        401: [(0, det(375.5, 46.5, 466.5, 227.5))],  # .5 edges: NumPy rounds half to even, like the release
        801: [(2, det(350.0, 66.0, 426.0, 218.0)), (5, det(432.0, 249.0, 517.0, 418.0))],
        5000: [(0, det(10.0, 10.0, 60.0, 110.0))],  # past the last frame (1,394)
    },
    "usa+newyork+concourse-walkers": {  # one box reaches x = 700 in a 640 px wide video
        11: [(0, det(100.0, 50.0, 160.0, 200.0))],
        31: [(0, det(500.0, 40.0, 700.0, 300.0))],
    },
    "uk+london+pedestrians": {  # found on a 1280x720 copy: rescaled to the 1920x1080 download
        "size": (1280, 720),
        11: [(0, det(600.2, 100.4, 680.6, 330.0))],
        51: [(0, det(100.0, 200.0, 180.0, 420.0)), (1, det(900.0, 150.0, 990.0, 400.0))],
    },
    "usa+boston+street-crossing": {
        1: [(0, det(20.0, 30.0, 80.0, 200.0))],
        300: [(2, det(300.4, 100.6, 350.5, 250.5))],
    },
    "uk+london+doesnotexist": {11: [(0, det(1.0, 1.0, 30.0, 90.0))]},  # not downloadable
    "fr+paris+notlisted": {11: [(0, det(1.0, 1.0, 30.0, 90.0))]},  # not in vnames.txt
}
SCALE = {"uk+london+pedestrians": 1.5}
WRITTEN = ["usa+newyork+one-by-one-person-detection", "uk+london+pedestrians", "usa+boston+street-crossing"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            super().handle()


def run(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "pipeline.py", *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def chain(tmp_path_factory, videos_dir: Path):
    base = tmp_path_factory.mktemp("lup")
    (base / "vnames.txt").write_text("\n".join(SOURCES) + "\n")
    (base / "dets").mkdir()
    for vname, dets in DETS.items():
        with open(base / "dets" / f"{vname}.pkl", "wb") as f:
            pickle.dump(dets, f)
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=videos_dir)
    )
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    root = base / "root"
    try:
        template = f"http://127.0.0.1:{srv.server_address[1]}/{{id}}.mp4"
        run(
            "crawl",
            "--from-vnames",
            str(base / "vnames.txt"),
            "--vnames-url-template",
            template,
            "--root",
            str(root),
        )
    finally:
        srv.shutdown()
        srv.server_close()
    build = run("build-shards", "--from-dets", str(base / "dets"), "--root", str(root), "--max-samples", "3")
    run("export-lmdb", "--root", str(root))
    index = pd.read_parquet(root / "shards" / "index.parquet")
    samples = list(wds.WebDataset([str(root / "shards" / s) for s in index["shard"]], shardshuffle=False))
    return {"root": root, "base": base, "stdout": build.stdout, "samples": samples}


def expected_crops(videos_dir: Path) -> dict[tuple[str, int, int], bytes]:
    """(vname, frame_id, obj_idx) -> JPEG (q95) of the release's cut: frame_id - 1, bbox.round()."""
    crops = {}
    for vname in WRITTEN:
        dets = {k: v for k, v in DETS[vname].items() if isinstance(k, int)}
        frames = reference_frames(videos_dir / SOURCES[vname], {f - 1 for f in dets})
        for frame_id, entries in dets.items():
            for obj_idx, d in entries:
                if frame_id - 1 not in frames:
                    continue
                x1, y1, x2, y2 = np.round(d["bbox"].astype(np.float64) * SCALE.get(vname, 1.0)).astype(int)
                crop = frames[frame_id - 1][y1:y2, x1:x2]
                assert crop.shape[:2] == (y2 - y1, x2 - x1)  # inside the frame: nothing clipped
                crops[vname, frame_id, obj_idx] = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 95])[
                    1
                ].tobytes()
    return crops


def test_every_crop_equals_an_independent_cut(chain, videos_dir):
    expected = expected_crops(videos_dir)
    assert len(expected) == 5 + 3 + 2  # one-by-one (one box past the end), pedestrians, street-crossing
    seen = set()
    for s in chain["samples"]:
        meta = json.loads(s["json"])
        ident = (meta["vname"], meta["frame_id"], meta["obj_idx"])
        assert s["jpg"] == expected[ident], ident
        country, city, video_id = meta["vname"].split("+")
        assert (meta["country"], meta["city"], meta["video_id"]) == (country, city, video_id)
        assert s["__key__"] == f"{video_id}_{meta['frame_id']:08d}_{meta['obj_idx']:03d}"
        assert meta["frame"] == meta["frame_id"] - 1
        assert (meta["source_width"], meta["source_height"]) == SIZES[video_id]
        assert meta["det"]["score"] == pytest.approx(0.9) and len(meta["det"]["kpts"]) == 17
        seen.add(ident)
    assert seen == set(expected)
    rescaled = [json.loads(s["json"]) for s in chain["samples"] if s["__key__"].startswith("pedestrians")]
    assert all(m["dets_size"] == [1280, 720] for m in rescaled)
    assert {tuple(m["crop_xyxy"]) for m in rescaled} >= {
        (900, 151, 1021, 495)
    }  # (600.2, 100.4, 680.6, 330) x 1.5


def test_box_beyond_the_frame_is_reported(chain):
    root = chain["root"]
    records = pd.read_parquet(root / "shards" / "samples.parquet").set_index("key")
    concourse = records[records["video_id"] == "concourse-walkers"]
    assert len(concourse) == 2 and set(concourse["status"]) == {"resolution_mismatch"}
    assert "640x360" in concourse["reason"].iloc[0] and "700" in concourse["reason"].iloc[0]
    assert not any(s["__key__"].startswith("concourse-walkers") for s in chain["samples"])  # none cut
    report = json.loads((root / "dets_report.json").read_text())
    bad = {v["vname"]: v for v in report["videos_not_cut"]}
    assert bad["usa+newyork+concourse-walkers"]["status"] == "resolution_mismatch"
    assert records.loc["one-by-one-person-detection_00005000_000", "status"] == "frame_unreadable"


def test_missing_videos_and_counts_are_reported(chain):
    report = json.loads((chain["root"] / "dets_report.json").read_text())
    assert report["videos"] == {
        "listed": 5,
        "downloaded": 4,
        "unavailable": {"not_found": 1},
        "in_dets": 6,
        "listed_without_dets": 0,
        "cut": 3,
        "rescaled": 1,
        "not_cut": {"not_downloaded": 1, "not_listed": 1, "resolution_mismatch": 1},
    }
    n_boxes = sum(len(v) for d in DETS.values() for k, v in d.items() if isinstance(k, int))
    assert report["crops"]["expected"] == n_boxes == 15
    assert report["crops"]["written"] == len(chain["samples"]) == 10
    assert report["crops"]["not_written"] == {
        "frame_unreadable": 1,
        "not_downloaded": 1,
        "not_listed": 1,
        "resolution_mismatch": 2,
    }
    bad = {v["vname"]: v for v in report["videos_not_cut"]}
    assert bad["uk+london+doesnotexist"]["status"] == "not_downloaded"
    assert "not_found" in bad["uk+london+doesnotexist"]["reason"]
    assert bad["fr+paris+notlisted"]["status"] == "not_listed"
    table = {tuple(line.split()[-2:]) for line in chain["stdout"].splitlines()}  # the printed summary
    assert ("regenerate.videos.not_cut.not_downloaded", "1") in table
    assert ("regenerate.crops.written", "10") in table


def official_keys_by_hand() -> dict[str, tuple[str, int, int]]:
    """The release's convert_lmdb.py walk over the written crops: sorted country/city/video/name."""
    tree: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for vname, frame_id, obj_idx in expected_crops_ids():
        country, city, vid = vname.split("+")
        tree[country][city][vid].append(f"{frame_id:08d}_{obj_idx:04d}.jpg")  # the release's crop name
    keys = {}
    for i, country in enumerate(sorted(tree)):
        for j, city in enumerate(sorted(tree[country])):
            for k, vid in enumerate(sorted(tree[country][city])):
                for m, name in enumerate(sorted(tree[country][city][vid])):
                    frame_id, obj_idx = (int(x) for x in name[:-4].split("_"))
                    keys[f"{i:02d}_{j:02d}_{k:04d}_{m:08d}"] = (f"{country}+{city}+{vid}", frame_id, obj_idx)
    return keys


def expected_crops_ids() -> list[tuple[str, int, int]]:
    return [
        (vname, frame_id, obj_idx)
        for vname in WRITTEN
        for frame_id, entries in DETS[vname].items()
        if isinstance(frame_id, int) and frame_id != 5000
        for obj_idx, _ in entries
    ]


def test_lmdb_reads_back_like_the_release_loader(chain):
    """lup_moco/libs/dataset.py: keys = pickle.load(keys.pkl)['keys']; txn.get(key); cv2.imdecode."""
    out = chain["root"] / "lup_lmdb"
    with open(out / "keys.pkl", "rb") as f:
        keys = pickle.load(f)["keys"]
    expected = official_keys_by_hand()
    assert keys == list(expected)  # the release's enumeration order
    assert keys[0] == "00_00_0000_00000000" and "01_01_0000_00000000" in keys  # usa/newyork: one-by-one only
    by_ident = {}
    for s in chain["samples"]:
        meta = json.loads(s["json"])
        by_ident[meta["vname"], meta["frame_id"], meta["obj_idx"]] = s["jpg"]
    env = lmdb.open(str(out / "lmdb"), readonly=True, lock=False, readahead=False, meminit=False)
    try:
        assert env.stat()["entries"] == len(keys) == 10
        for key in keys:
            with env.begin(write=False) as txn:
                buf = txn.get(key.encode("ascii"))
            assert bytes(buf) == by_ident[expected[key]]
            im = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR)
            ref = cv2.imdecode(np.frombuffer(by_ident[expected[key]], np.uint8), cv2.IMREAD_COLOR)
            assert im is not None and np.array_equal(im, ref)
    finally:
        env.close()


def test_export_list_format_rerun_and_reimport(chain, tmp_path):
    root = chain["root"]
    cfg = ExportLmdbSettings(output=str(tmp_path / "lup"), keys_format="list")
    first = export_lmdb(cfg, root)
    with open(tmp_path / "lup" / "keys.pkl", "rb") as f:
        listed = pickle.load(f)  # LUP/convert_lmdb.py's format: a plain list
    with open(root / "lup_lmdb" / "keys.pkl", "rb") as f:
        assert listed == pickle.load(f)["keys"]
    data = (tmp_path / "lup" / "lmdb" / "data.mdb").read_bytes()
    again = export_lmdb(cfg, root)
    assert again["up_to_date"] is True and again["images"] == first["images"] == 10
    assert (tmp_path / "lup" / "lmdb" / "data.mdb").read_bytes() == data
    mapping = pd.read_parquet(tmp_path / "lup" / "keys.parquet")
    assert list(mapping["lmdb_key"]) == listed and mapping["sample_key"].is_unique
    # as if killed while writing the next database, and before export.json was written: redone
    (tmp_path / "lup" / ".lmdb.tmp").mkdir()
    (tmp_path / "lup" / ".lmdb.tmp" / "data.mdb").write_bytes(b"half written")
    (tmp_path / "lup" / "export.json").unlink()
    redone = export_lmdb(cfg, root)
    assert "up_to_date" not in redone and not (tmp_path / "lup" / ".lmdb.tmp").exists()
    env = lmdb.open(str(tmp_path / "lup" / "lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        assert [bytes(k).decode() for k, _ in txn.cursor()] == sorted(listed)
    env.close()


def test_rerun_reuses_every_shard(chain):
    from shards.build import build_shards
    from shards.settings import ShardSettings

    root = chain["root"]
    index = (root / "shards" / "index.parquet").read_bytes()
    report = json.loads((root / "dets_report.json").read_text())
    cfg = ShardSettings(from_dets=str(chain["base"] / "dets"), max_samples=3, workers=1)
    summary = build_shards(cfg, root)
    assert summary["samples_written_now"] == 0 and summary["shards_reused"] == summary["shards"] == 4
    assert (root / "shards" / "index.parquet").read_bytes() == index
    assert json.loads((root / "dets_report.json").read_text()) == report

"""Regenerate LUPerson end to end, as a user runs it: ``vnames.txt`` and per-video detection pickles
in the release's formats for the sample footage, ``crawl --from-vnames`` (from a loopback HTTP
server), ``build-shards --from-dets`` and ``export-lmdb``; then every crop, the report and the LMDB
are checked against independent references (OpenCV's sequential decode, the release's loader).
Here every crop and the report; the LMDB and reruns: ``test_lup_regenerate_lmdb.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from reference import reference_frames
from regenerate_chain import DETS, SCALE, SOURCES, WRITTEN, build_chain

SIZES = {
    "one-by-one-person-detection": (768, 432),
    "pedestrians": (1920, 1080),
    "street-crossing": (640, 360),
}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, videos_dir: Path):
    return build_chain(tmp_path_factory.mktemp("lup"), videos_dir)


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

"""bench/face_blur.py --smoke: every crop is timed, and a crop's JPEG changes exactly when a face
region was blurred in it (the bench compares the bytes with the unblurred encode)."""

from __future__ import annotations

import json


def test_face_blur_smoke(reid_dir, tmp_path):
    from bench.face_blur import SETS, main

    out = tmp_path / "face_blur.json"
    report = main(
        ["--smoke", "--data", str(reid_dir.parent), "--shards", str(tmp_path / "none"), "--out", str(out)]
    )
    crops = report["crops"]
    assert [r["set"] for r in crops] == [s for s in SETS for _ in range(3)]
    assert all(r["changed"] == (r["blurred"] > 0) for r in crops)
    assert any(r["blurred"] > 0 for r in crops)  # BlazePose finds the head of these walkers
    assert all(r["blurred"] <= r["blazeface"] + r["blazepose"] for r in crops)  # no region from nowhere
    assert json.loads(out.read_text())["table"] == report["table"]

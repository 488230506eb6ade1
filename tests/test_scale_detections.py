"""Part ``detections`` of bench/scale.py and the fixes it called for: its inputs are the formats the
stages read, its seeded box files are the bytes detect writes, the regeneration report counts a
samples.parquet of many row groups (a video's rows spanning them) as a reference does, and per-video
files are fanned out."""

from __future__ import annotations

import os
import pickle
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline
from bench.scale_parts import detection_inputs as inputs
from bench.scale_parts.detections import DETECT, seed_detections
from common.errors import UsageError
from common.manifests import boxes, samples, video_filter
from common.media.frames import read_frames
from shards.release import calibrate, dets_input, import_dets
from shards.release.dets_report import write_report
from shards.write.items import Task


@pytest.fixture(scope="module")
def clip(shared_data, tmp_path_factory):
    return inputs.cut_clip(shared_data, tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_the_clip_is_real_footage_detect_samples_twice(clip, videos_dir):
    frames = dict(read_frames(clip, [0, 100, 120]))
    assert sorted(frames) == [0, 100, 120] and frames[0].shape == (320, 192, 3)
    source = dict(read_frames(videos_dir / inputs.SOURCE, [inputs.FIRST_FRAME + 100]))
    crop = source[inputs.FIRST_FRAME + 100][slice(*inputs.ROWS), slice(*inputs.COLUMNS)]
    assert np.abs(frames[100].astype(int) - crop).mean() < 4  # the same pixels, through H.264 once more
    assert not dict(read_frames(clip, [inputs.N_FRAMES]))  # 121 frames: detect samples 0 and 100


def test_the_release_bundle_is_the_official_format(clip, tmp_path):
    n = 30
    bundle = inputs.release_inputs(clip, tmp_path, [tmp_path / "root"], n)
    videos = dets_input.load(str(bundle))  # the restricted unpickler: builtins and arrays only
    assert len(videos) == n
    parsed = [dets_input.parse(v.dets) for v in videos]
    counts = [len(p.boxes) for p in parsed]
    assert all(60 <= c <= 120 for c in counts) and not any(p.malformed or p.duplicates for p in parsed)
    for box in (b for p in parsed for b in p.boxes):
        x1, y1, x2, y2 = box.bbox
        assert box.frame_id in inputs.RELEASE_IDS and 0 <= x1 < x2 <= 192 and 0 <= y1 < y2 <= 320
    crawled = pd.read_parquet(tmp_path / "root" / "videos.parquet").set_index("vname")
    downloaded = crawled[crawled["status"] == "ok"]
    assert len(downloaded) == n // inputs.DOWNLOADED_EVERY and set(crawled["status"]) == {"ok", "unavailable"}
    assert all(
        os.stat(p).st_ino == os.stat(tmp_path / "videos" / "clip-000.mp4").st_ino for p in downloaded["path"]
    )
    tasks, planned = import_dets.plan(str(bundle), tmp_path / "root", None, None)
    assert planned == {"dets_videos": n, "dets_boxes": sum(counts)}


def test_seeded_box_files_are_the_bytes_detect_writes(clip, tmp_path):
    root = tmp_path / "root"
    inputs.detect_inputs(clip, tmp_path, root, 3)
    assert len(video_filter.kept(root)) == 3
    assert pipeline.main(["detect", "--root", str(root), *DETECT[:4], "--workers", "0"]) == 0
    written = {p.stem: p.read_bytes() for p in boxes.files(root)}
    assert len(written) == 3 and len(boxes.read(next(iter(boxes.files(root))))) > 0  # HOG found walkers
    first, *others = sorted(written)
    for vid in others:
        boxes.path_of(root, vid).unlink()
    assert seed_detections(boxes.path_of(root, first), root) == 2
    assert {p.stem: p.read_bytes() for p in boxes.files(root)} == written


def test_box_files_are_fanned_out_and_listed_in_id_order(tmp_path):
    ids = [inputs.video_id(i) for i in range(2000)]
    paths = [boxes.path_of(tmp_path, vid) for vid in ids]
    per_folder = Counter(p.parent for p in paths)
    assert len(per_folder) == 256 and max(per_folder.values()) <= 3 * 2000 / 256
    for path in paths[:50]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (paths[0].parent / f".{paths[0].name}.123.tmp").write_bytes(b"")  # a write in progress
    assert boxes.files(tmp_path) == sorted(paths[:50], key=lambda p: p.name)
    assert calibrate.cache_file(tmp_path, ids[0]).parent.name == paths[0].parent.name


def reference_outcomes(frame: pd.DataFrame) -> dict[str, dict]:
    """Per vname, what the report records, computed over the whole table at once."""
    out = {}
    for vname, rows in frame.groupby("source_id"):
        bad = rows[rows["status"] != "ok"]
        failed = dict(sorted(Counter(bad["status"]).items()))
        rescaled = bool(rows.loc[rows["status"] == "ok", "reason"].str.startswith("boxes rescaled").any())
        out[vname] = {"written": int((rows["status"] == "ok").sum()), "failed": failed, "rescaled": rescaled}
        if failed and not out[vname]["written"]:
            top = sorted(failed, key=lambda s: (-failed[s], s))[0]
            out[vname]["reason"] = bad.loc[bad["status"] == top, "reason"].iloc[0]
    return out


def test_the_report_counts_each_video_as_a_reference_does(tmp_path):
    rng = np.random.default_rng(0)
    statuses = ["ok", "ok", "frame_unreadable", "empty_box", "bad_box"]
    rows = []
    for v in range(40):
        for k in range(int(rng.integers(1, 30))):
            status = statuses[int(rng.integers(0, 5 if v % 3 else 2 if v % 2 else 5))]
            reason = f"boxes rescaled from 1280x720 (video {v})" if status == "ok" and v % 4 == 0 else ""
            reason = f"{status} {k}" if status != "ok" else reason
            row = {"key": f"v{v:03d}_{k:08d}_000", "status": status, "reason": reason, "source": "dets"}
            rows.append(samples.DEFAULTS | row | {"source_id": f"usa+boston+v{v:03d}", "frame": k})
    frame = samples.frame(rows)
    root = tmp_path / "root"
    (root / "shards").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), root / "shards" / samples.FILE, row_group_size=37
    )
    assert pq.ParquetFile(root / "shards" / samples.FILE).num_row_groups > 5  # videos span groups
    pd.DataFrame({"vname": sorted(set(frame["source_id"])), "status": "ok"}).to_parquet(
        root / "videos.parquet"
    )
    context = {"status": "ok", "reason": "", "boxes": 0, "malformed": [], "duplicates": 0}
    tasks = [Task("dets", context | {"vname": v}, ()) for v in sorted(set(frame["source_id"]))]
    figures = write_report(root, "dets.pkl", tasks, samples.read(root / "shards"))
    assert figures["crops"]["expected"] == len(frame)
    assert figures["crops"]["written"] == int((frame["status"] == "ok").sum())
    report = pd.read_json(root / "dets_report.json", typ="series")
    got = {o["vname"]: o for o in report["videos_not_cut"] + report["videos_with_failed_crops"]}
    want = reference_outcomes(frame)
    assert {v for v, o in want.items() if o["failed"]} == set(got)
    for vname, o in got.items():
        assert (o["written"], o["failed"], o["rescaled"]) == tuple(
            want[vname][k] for k in ("written", "failed", "rescaled")
        )
        assert o["reason"] == want[vname].get("reason", "")
    assert figures["videos"]["rescaled"] == sum(o["rescaled"] and o["written"] > 0 for o in want.values())


def test_a_damaged_samples_file_is_one_line(tmp_path):
    (tmp_path / samples.FILE).write_bytes(os.urandom(256))
    with pytest.raises(UsageError, match="not a readable Parquet file"):
        list(samples.batches(tmp_path, ["status"]))
    with pytest.raises(UsageError, match="run build-shards first"):
        list(samples.batches(tmp_path / "nowhere", ["status"]))


def test_a_bundle_of_shared_arrays_is_no_bench_input(clip, tmp_path):
    """Each released box is its own array (a real bundle's pickle has no shared references to
    memoize): the bundle's size grows with its boxes."""
    bundle = inputs.release_inputs(clip, tmp_path, [tmp_path / "root"], 10)
    with open(bundle, "rb") as f:
        loaded = pickle.load(f)
    arrays = [det["bbox"] for dets in loaded.values() for entries in dets.values() for _, det in entries]
    assert len({id(a) for a in arrays}) == len(arrays)
    assert bundle.stat().st_size > 60 * len(arrays)

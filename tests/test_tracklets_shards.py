"""Tracklets through build-shards: the crop JSON's ``"tracklet"`` and ``shards/tracklets.parquet``.

Own detections: a ``detections/<video>.parquet`` with a ``tracklet`` column (as ``detect --tracks``
writes it) on real frames of one-by-one-person-detection.mp4. Image folders: TownCentre's crops
are ``<person>_<frame>.jpg``, 222 tracks (../shared/data/README.md lists the folder).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds
from processes import kill_group_when

from common.errors import UsageError
from common.manifests import boxes, shard_index, tracklets
from shards.build import build_shards
from shards.settings import ShardSettings
from shards.sources import images, pick
from shards.write.writer import write_shards

REPO = Path(__file__).resolve().parent.parent
CLIP = "one-by-one-person-detection.mp4"
TOWN_PATTERN = r"(?P<tracklet>[0-9]+)_[0-9]+[.]jpg"
# (frame, x1, y1, x2, y2, tracklet or None): persons HOG found on the clip (docs/detect.md)
BOXES = [
    (85, 462, 70, 532, 209, "obo_t100_0"),
    (100, 459, 68, 530, 209, "obo_t100_0"),
    (100, 351, 65, 472, 306, None),
    (115, 369, 67, 436, 201, "obo_t100_1"),
    (125, 366, 66, 434, 202, "obo_t100_1"),
    (375, 356, 0, 568, 410, "obo_t400_1"),
    (400, 356, 0, 568, 410, "obo_t400_1"),
    (400, 375, 46, 465, 227, None),
    (790, 349, 66, 434, 235, "obo_t800_0"),
]
STOP_AT_SECOND_PART = """
import os, signal, sys
from pathlib import Path
from shards.build import build_shards
from shards.settings import ShardSettings
from shards.write import progress

real = progress.write_part

def write_part(out, number, records, row):
    if number == 1:  # the second shard is renamed into place, its part file not yet written
        os.kill(os.getpid(), signal.SIGSTOP)
    real(out, number, records, row)

progress.write_part = write_part
build_shards(ShardSettings(max_samples=2, workers=1), Path(sys.argv[1]))
"""


def detections_workspace(root: Path, video: Path, with_tracklets: bool = True) -> Path:
    """``video_filter.parquet`` keeping the clip and its boxes (``BOXES``), all valid."""
    root.mkdir()
    row = {"video_id": "obo", "path": str(video), "keep": True, "n_frames": 1394, "status": "ok"}
    pd.DataFrame([row]).to_parquet(root / "video_filter.parquet")
    columns: dict[str, list] = {name: [] for name in boxes.schema().names}
    seen: dict[int, int] = {}
    for frame, x1, y1, x2, y2, tracklet in BOXES:
        values = {"video_id": "obo", "frame": frame, "box": seen.get(frame, 0), "x1": x1, "y1": y1, "x2": x2}
        values |= {"y2": y2, "score": 1.2, "keypoints": [], "valid": True, "status": "ok", "detector": "hog"}
        values |= {"keypoint_model": "none", "pose_present": None, "tracklet": tracklet}
        seen[frame] = seen.get(frame, 0) + 1
        for name, value in values.items():
            columns[name].append(value)
    path = boxes.path_of(root, "obo")
    path.parent.mkdir(parents=True)
    if not with_tracklets:  # a file detect never wrote
        import pyarrow as pa
        import pyarrow.parquet as pq

        del columns["tracklet"]
        schema = boxes.schema(frames_sampled="14")
        schema = schema.remove(schema.get_field_index("tracklet"))
        pq.write_table(pa.table(columns, schema=schema), path)
    else:
        boxes.write(path, columns, frames_sampled="14")
    return root


def outputs(root: Path) -> dict[str, bytes]:
    shards = root / "shards"
    names = sorted(p.name for p in shards.glob("lup-*.tar")) + ["index.parquet", "samples.parquet"]
    names += [tracklets.FILE] if (shards / tracklets.FILE).exists() else []
    return {name: (shards / name).read_bytes() for name in names}


def samples_json(shards: Path) -> dict[str, dict]:
    index = shard_index.read_shard_index(shards)
    urls = [str(shards / name) for name in index["shard"]]
    return {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(urls, shardshuffle=False)}


def test_crop_json_and_tracklets_file(videos_dir, tmp_path):
    root = detections_workspace(tmp_path / "ws", videos_dir / CLIP)
    summary = build_shards(ShardSettings(max_samples=4, workers=1), root)
    assert summary["samples"] == len(BOXES) and summary["tracklets"] == 4
    meta = samples_json(root / "shards")
    listed = tracklets.read(root / "shards")
    assert list(listed.columns[:3]) == ["tracklet", "key", "shard"]
    for (frame, *_, tracklet), key in zip(BOXES, sorted(meta), strict=True):
        assert meta[key]["frame"] == frame and meta[key].get("tracklet") == tracklet
        assert ("tracklet" in meta[key]) == (tracklet is not None)  # absent, not null
    assert sorted(listed["key"]) == sorted(k for k in meta if "tracklet" in meta[k])
    assert listed.groupby("tracklet").size().to_dict() == {
        "obo_t100_0": 2,
        "obo_t100_1": 2,
        "obo_t400_1": 2,
        "obo_t800_0": 1,
    }
    index = shard_index.read_shard_index(root / "shards")
    assert set(listed["shard"]) <= set(index["shard"]) and (listed["video_id"] == "obo").all()
    assert listed.set_index("key")["frame"].to_dict() == {k: meta[k]["frame"] for k in listed["key"]}


def test_without_tracklets_no_crop_names_one_and_a_file_without_the_column_is_refused(videos_dir, tmp_path):
    """A tracklet column full of nulls (detect without --tracks) cuts crops whose JSON names no
    tracklet; a box file without the column is not one detect wrote: one UsageError line."""
    null = detections_workspace(tmp_path / "null", videos_dir / CLIP)
    table = pd.read_parquet(boxes.path_of(null, "obo"))
    columns = {name: table[name].tolist() for name in boxes.schema().names}
    columns["tracklet"] = [None] * len(table)
    columns["pose_present"] = [None] * len(table)
    boxes.write(boxes.path_of(null, "obo"), columns, frames_sampled="14")
    summary = build_shards(ShardSettings(max_samples=4, workers=1), null)
    assert "tracklets" not in summary and not (null / "shards" / tracklets.FILE).exists()
    metas = samples_json(null / "shards")
    assert len(metas) == len(table) and not any("tracklet" in m for m in metas.values())
    old = detections_workspace(tmp_path / "old", videos_dir / CLIP, with_tracklets=False)
    with pytest.raises(UsageError, match=r"lacks columns \['tracklet'\]"):
        build_shards(ShardSettings(max_samples=4, workers=1), old)


def test_killed_build_with_tracklets_reruns_to_identical_bytes(videos_dir, tmp_path):
    whole = detections_workspace(tmp_path / "whole", videos_dir / CLIP)
    build_shards(ShardSettings(max_samples=2, workers=1), whole)
    killed = detections_workspace(tmp_path / "killed", videos_dir / CLIP)
    command = [sys.executable, "-c", STOP_AT_SECOND_PART, str(killed)]
    stopped = killed / "shards" / "lup-000001.tar"
    status = kill_group_when(command, REPO, lambda proc: stopped_process(proc.pid), 120)
    assert status == -signal.SIGKILL and stopped.exists()
    assert not (killed / "shards" / tracklets.FILE).exists()
    summary = build_shards(ShardSettings(max_samples=2, workers=1), killed)
    assert summary["shards_reused"] == 1 and summary["tracklets"] == 4
    assert outputs(killed) == outputs(whole) and tracklets.FILE in outputs(whole)


def stopped_process(pid: int) -> bool:
    """Whether the process is stopped by a signal (Linux ``/proc``)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


@pytest.fixture(scope="module")
def town(unlabeled_dir, tmp_path_factory) -> Path:
    """TownCentre's crops with the pattern, plus one file the pattern does not match."""
    folder = tmp_path_factory.mktemp("town")
    tree = folder / "crops"
    shutil.copytree(unlabeled_dir / "TownCentre", tree)
    shutil.copy(tree / "37_796.jpg", tree / "extra.jpg")
    tasks, counts = images.plan(str(tree), TOWN_PATTERN)
    assert counts["tracklets"] == 222 and counts["images_without_tracklet"] == 1
    summary = write_shards(tasks, folder / "shards", ShardSettings(), pick.run_job)
    assert summary["samples"] == 6967 + 1 and summary["tracklets"] == 222
    return folder / "shards"


def test_from_images_tracklets_by_pattern(town):
    listed = tracklets.read(town)
    assert listed["tracklet"].nunique() == 222 and len(listed) == 6967
    assert listed.groupby("tracklet").size().median() == 32  # as ../shared/data/README.md says
    assert (listed["video_id"] == "").all() and (listed["frame"] == -1).all()
    meta = samples_json(town)
    assert meta["37_796"]["tracklet"] == "37" and meta["37_796"]["path"] == "37_796.jpg"
    assert "tracklet" not in meta["extra"]
    assert all(meta[k]["tracklet"] == t for k, t in zip(listed["key"], listed["tracklet"], strict=True))


def test_tracklet_pattern_setting_is_checked():
    from common.errors import SettingsError

    for bad in ("(?P<person>[0-9]+)_", "(?P<tracklet>[0-9]+"):
        with pytest.raises(SettingsError, match="tracklet_pattern"):
            ShardSettings(from_images="crops", tracklet_pattern=bad)
    with pytest.raises(SettingsError, match="--from-images only"):
        ShardSettings(tracklet_pattern=TOWN_PATTERN)

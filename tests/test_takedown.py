"""``python pipeline.py takedown`` on real crops: only the shards that held the crops change, every
table and the LMDB export follow, and no later build (on the root, or from scratch) brings them back.

Two roots: 40 crops of ``../shared/data/unlabeled`` (CUHK and MIT) imported with ``--from-images``
and exported to an LMDB, and crops cut from a real clip under three video ids (the detections path),
whose video ids are taken down. kill -9 mid-way (a launcher that SIGKILLs itself right after a
chosen file is renamed into place: no hook in the pipeline), then a rerun: the files of an
uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lmdb
import pandas as pd
import pytest
import webdataset as wds

import pipeline
from common.manifests import takedowns
from shards.build import build_shards
from shards.release.takedown import takedown
from shards.settings import ShardSettings, TakedownSettings

REPO = Path(pipeline.__file__).resolve().parent
REASON = "the person asked to be removed (ticket 42)"
KILL_AFTER = """
import os, re, signal, sys
import pipeline

rename, point = os.replace, re.compile(sys.argv[1])

def replace(src, dst, *args, **kwargs):
    rename(src, dst, *args, **kwargs)
    if point.fullmatch(os.path.basename(dst)):
        os.kill(os.getpid(), signal.SIGKILL)  # renamed into place, nothing after it done

os.replace = replace
sys.exit(pipeline.main(sys.argv[2:]))
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tars(root: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted((root / "shards").glob("lup-*.tar"))}


def shard_files(root: Path) -> dict[str, bytes]:
    """Every tar, part file, index.parquet, samples.parquet and tracklets.parquet, by path."""
    shards = root / "shards"
    names = ["lup-*.tar", "parts/*.parquet", "index.parquet", "samples.parquet", "tracklets.parquet"]
    return {str(p.relative_to(shards)): p.read_bytes() for name in names for p in sorted(shards.glob(name))}


def read_back(root: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of the index's shards, read with webdataset (not the tarfile module that wrote them)."""
    index = pd.read_parquet(root / "shards" / "index.parquet")
    urls = [str(root / "shards" / name) for name in index["shard"]]
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    return {s["__key__"]: {"jpg": s["jpg"], "json": s["json"]} for s in dataset}


def log_lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / takedowns.LOG).read_text().splitlines()]


def main(*args: str) -> int:
    return pipeline.main([*args])


@pytest.fixture(scope="module")
def built(tmp_path_factory, unlabeled_dir) -> Path:
    """40 real crops from two folders, 10 a shard (4 shards), exported to ``lup_lmdb``."""
    base = tmp_path_factory.mktemp("images")
    for folder in ("CUHK", "MIT"):
        (base / "tree" / folder).mkdir(parents=True)
        for src in sorted((unlabeled_dir / folder).glob("*.jpg"))[:20]:
            shutil.copy(src, base / "tree" / folder / src.name)
    root = base / "root"
    tree = str(base / "tree")
    assert main("build-shards", "--root", str(root), "--from-images", tree, "--max-samples", "10") == 0
    assert main("export-lmdb", "--root", str(root)) == 0
    assert len(tars(root)) == 4
    return root


def copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest)
    return dest


def image_keys(root: Path) -> tuple[str, str]:
    """The first key of shard 0 and a middle key of shard 2: two shards change, two do not."""
    samples = pd.read_parquet(root / "shards" / "samples.parquet")
    first = samples[samples["shard"] == "lup-000000.tar"]["key"].iloc[0]
    middle = samples[samples["shard"] == "lup-000002.tar"]["key"].iloc[4]
    return first, middle


@pytest.fixture(scope="module")
def taken(built, tmp_path_factory) -> tuple[Path, tuple[str, str]]:
    """A copy of ``built`` after ``takedown --keys A B nope``; the keys."""
    root = copy(built, tmp_path_factory.mktemp("taken") / "root")
    keys = image_keys(root)
    assert main("takedown", "--root", str(root), "--keys", *keys, "nope", "--reason", REASON) == 0
    return root, keys


def test_only_the_shards_that_held_the_crops_change(built, taken):
    root, keys = taken
    before, after = tars(built), tars(root)
    assert sorted(n for n in before if before[n] != after[n]) == ["lup-000000.tar", "lup-000002.tar"]
    original, now = read_back(built), read_back(root)
    assert sorted(now) == sorted(set(original) - set(keys)) and len(now) == 38
    assert all(now[k] == original[k] for k in now)  # every other sample's bytes as they were

    index = pd.read_parquet(root / "shards" / "index.parquet")
    for row in index.itertuples():
        path = root / "shards" / row.shard
        held = sorted(read_back_one(path))
        assert (row.bytes, row.sha256, row.n_samples) == (path.stat().st_size, sha(path), len(held))
        assert (row.first_key, row.last_key) == (held[0], held[-1])
    assert main("verify-shards", "--root", str(root)) == 0


def read_back_one(path: Path) -> set[str]:
    return {s["__key__"] for s in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)}


def test_tables_stats_and_log_record_the_takedown(built, taken):
    root, keys = taken
    samples = pd.read_parquet(root / "shards" / "samples.parquet").set_index("key")
    original = pd.read_parquet(built / "shards" / "samples.parquet").set_index("key")
    gone = samples.loc[list(keys)]
    assert (gone["status"] == "taken_down").all() and (gone["reason"] == REASON).all()
    assert (gone["shard"] == "").all() and (gone["bytes"] == original.loc[list(keys), "bytes"]).all()
    assert samples.drop(list(keys)).equals(original.drop(list(keys)))

    stats = json.loads((root / "stats.json").read_text())
    assert stats["images"] == 38 and stats["failed"] == {"taken_down": 2}

    (line,) = log_lines(root)
    assert line["reason"] == REASON and line["keys"] == sorted(keys) and line["videos"] == []
    assert line["unmatched"] == ["nope"] and line["crops_removed"] == 2
    assert line["shards_rewritten"] == ["lup-000000.tar", "lup-000002.tar"]
    assert line["time"].endswith("+00:00") and not (root / takedowns.PENDING).exists()

    # the same request again: nothing new, nothing written
    files = shard_files(root)
    cfg = TakedownSettings(keys=keys, reason="again")
    nothing = {"ids": 2, "already_taken_down": 2, "unmatched": 0, "crops_removed": 0, "shards_rewritten": 0}
    assert takedown(cfg, root) == nothing
    assert shard_files(root) == files and len(log_lines(root)) == 1


def test_lmdb_export_loses_the_entries_and_their_bytes(built, taken):
    root, keys = taken
    out = root / "lup_lmdb"
    mapping = pd.read_parquet(out / "keys.parquet")
    before = pd.read_parquet(built / "lup_lmdb" / "keys.parquet")
    assert sorted(set(before["sample_key"]) - set(mapping["sample_key"])) == sorted(keys)
    assert pickle.loads((out / "keys.pkl").read_bytes())["keys"] == mapping["lmdb_key"].tolist()
    assert mapping["lmdb_key"].tolist() == [k for k in before["lmdb_key"] if k in set(mapping["lmdb_key"])]
    samples = read_back(root)
    env = lmdb.open(str(out / "lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 38
        for lmdb_key, sample_key in zip(mapping["lmdb_key"], mapping["sample_key"], strict=True):
            assert txn.get(lmdb_key.encode()) == samples[sample_key]["jpg"]
    env.close()
    data = (out / "lmdb" / "data.mdb").read_bytes()
    removed = read_back(built)
    assert not any(removed[k]["jpg"][-400:] in data for k in keys)  # compacted: no free page keeps them
    summary = json.loads((out / "export.json").read_text())["summary"]
    assert summary["images"] == 38 and summary["jpeg_bytes"] == int(mapping["bytes"].sum())
    assert main("export-lmdb", "--root", str(root)) == 0  # up to date with the shards: nothing redone
    assert (out / "lmdb" / "data.mdb").read_bytes() == data


def test_later_builds_leave_them_out_and_match(built, taken, tmp_path):
    root, keys = taken
    tree = str(built.parent / "tree")
    args = ["--from-images", tree, "--max-samples", "10"]
    same = copy(root, tmp_path / "same")
    expected = shard_files(same)
    inodes = {p.name: p.stat().st_ino for p in (same / "shards").glob("lup-*.tar")}
    assert main("build-shards", "--root", str(same), *args) == 0
    assert {p.name: p.stat().st_ino for p in (same / "shards").glob("lup-*.tar")} == inodes  # none rewritten
    assert shard_files(same) == expected

    fresh = copy(root, tmp_path / "fresh")  # the log stays, the shards go
    shutil.rmtree(fresh / "shards")
    assert main("build-shards", "--root", str(fresh), *args) == 0
    assert shard_files(fresh) == expected
    assert not set(keys) & set(read_back(fresh))


def clip_workspace(root: Path, video: Path) -> dict[str, list[str]]:
    """video_filter.parquet and detections/ for three video ids of one real clip: 2 boxes on each
    of 4 frames, the first of each frame in a tracklet; the keys of each video."""
    from common.manifests import boxes

    root.mkdir(parents=True)
    ids = ["clipA", "clipB", "clipC"]
    rows = [(vid, str(video), "Leeds", True, "ok", 341, 25.0, 640, 360) for vid in ids]
    columns = ["video_id", "path", "city", "keep", "status", "n_frames", "fps", "width", "height"]
    pd.DataFrame(rows, columns=columns).to_parquet(root / "video_filter.parquet", index=False)
    keys = {}
    for n, vid in enumerate(ids):
        table = pd.DataFrame(
            [
                dict(video_id=vid, frame=frame, box=box, score=0.9, valid=True, status="ok")
                | dict(x1=40.0 + 200 * box + n, y1=30.0, x2=150.0 + 200 * box, y2=300.0 - n)
                | dict(keypoints=[0.0] * 51, detector="hog", keypoint_model="none")
                | dict(tracklet=f"{vid}_t0" if box == 0 and vid != "clipC" else None)
                for frame in (0, 30, 60, 90)
                for box in (0, 1)
            ]
        )
        boxes.path_of(root, vid).parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(boxes.path_of(root, vid), index=False)
        keys[vid] = [f"{vid}_{r.frame:08d}_{r.box:03d}" for r in table.itertuples()]
    return keys


def test_video_ids_from_a_file(videos_dir, tmp_path):
    root = tmp_path / "clips"
    keys = clip_workspace(root, videos_dir / "concourse-walkers.mp4")
    cfg = ShardSettings(max_samples=5, workers=1)
    build_shards(cfg, root)
    original, before = read_back(root), tars(root)
    assert len(original) == 24 and len(before) == 5
    held = pd.read_parquet(root / "shards" / "samples.parquet").set_index("key")["shard"]
    ids = tmp_path / "ids.txt"
    picked = keys["clipC"][3]
    ids.write_text(f"# from the uploader\nclipB  # all of it\n\n{picked}\nzzz\n")
    summary = takedown(TakedownSettings(from_file=str(ids), reason=REASON), root)
    assert summary["crops_removed"] == 9 and summary["unmatched"] == 1

    gone = set(keys["clipB"]) | {picked}
    assert sorted(read_back(root)) == sorted(set(original) - gone)
    changed = sorted(n for n, digest in tars(root).items() if digest != before[n])
    assert changed == sorted({held[k] for k in gone})
    samples = pd.read_parquet(root / "shards" / "samples.parquet").set_index("key")
    assert (samples.loc[sorted(gone), "status"] == "taken_down").all()
    assert set(samples.loc[samples["video_id"] == "clipB", "status"]) == {"taken_down"}
    (line,) = log_lines(root)
    assert (line["videos"], line["keys"], line["unmatched"]) == (["clipB"], [picked], ["zzz"])
    assert line["shards_rewritten"] == changed
    index = pd.read_parquet(root / "shards" / "index.parquet").set_index("shard")
    empty = index.loc["lup-000002.tar"]  # held clipB's crops 2-6 only: an empty tar, in its place
    assert (empty["n_samples"], empty["bytes"], empty["first_key"]) == (0, 10240, "")
    tracklets = pd.read_parquet(root / "shards" / "tracklets.parquet")  # clipB's tracklet is gone
    assert set(tracklets["tracklet"]) == {"clipA_t0"} and len(tracklets) == 4
    assert main("verify-shards", "--root", str(root)) == 0

    expected = shard_files(root)
    shutil.rmtree(root / "shards")
    build_shards(cfg, root)  # from scratch: the crops keep their places, so the same shards
    assert shard_files(root) == expected
    # report.html draws example boxes on the frames: none of a taken-down video
    assert main("stats", "--root", str(root), "--report-examples", "40") == 0
    page = (root / "report.html").read_text()
    assert 'alt="clipA frame' in page and 'alt="clipB frame' not in page
    assert "taken down (takedowns.jsonl)" in page


def outputs(root: Path) -> dict[str, bytes]:
    """Everything a takedown writes, but the log (its id and time are the run's)."""
    skip = {".luperson.lock", takedowns.LOG, "lock.mdb"}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip and "settings" not in p.parts
    }


@pytest.mark.parametrize(
    ("point", "rerun"),
    [
        (r"lup-[0-9]+\.tar", "same"),  # the first shard renamed, its part file not written
        (r"samples\.parquet", "build-shards"),  # the tables written, the LMDB not yet
        (r"takedowns\.jsonl", "bare"),  # logged, the pending file still there
    ],
)
def test_killed_takedown_reruns_to_the_same_files(built, tmp_path, point, rerun):
    keys = image_keys(built)
    reference = copy(built, tmp_path / "reference")
    takedown(TakedownSettings(keys=keys, reason=REASON), reference)
    root = copy(built, tmp_path / "killed")
    args = ["takedown", "--root", str(root), "--keys", *keys, "--reason", REASON]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER, point, *args], cwd=REPO, capture_output=True, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert (root / takedowns.PENDING).is_file()
    assert tars(root) != tars(built) and outputs(root) != outputs(reference)
    assert main("export-lmdb", "--root", str(root)) == 2  # refused until the takedown is finished

    tree = str(built.parent / "tree")
    again = {
        "same": args,
        "build-shards": ["build-shards", "--root", str(root), "--from-images", tree, "--max-samples", "10"],
        "bare": ["takedown", "--root", str(root)],
    }[rerun]
    assert main(*again) == 0
    assert not (root / takedowns.PENDING).exists()
    assert outputs(root) == outputs(reference)
    (line,) = log_lines(root)
    (expected,) = log_lines(reference)
    assert {k: v for k, v in line.items() if k not in ("id", "time")} == {
        k: v for k, v in expected.items() if k not in ("id", "time")
    }
    assert not list(root.rglob("*.tmp")) and not (root / "lup_lmdb" / ".lmdb.tmp").exists()


def test_bad_requests_are_one_line_and_change_nothing(built, tmp_path, capsys):
    root = copy(built, tmp_path / "root")
    files = outputs(root)
    cases = [
        ([], "nothing to take down"),
        (["--keys", "CUHK_0002"], "needs --reason"),
        (["--videos", "no such", "--reason", "x"], "is not a video id or crop key"),
        (["--keys", "nope", "--videos", "nada", "--reason", "x"], "none of the 2 ids matches"),
        (["--from-file", str(tmp_path / "missing.txt"), "--reason", "x"], "does not exist"),
        (["--keys", "CUHK_0002", "--reason", "two\nlines"], "one line"),
    ]
    for extra, needle in cases:
        capsys.readouterr()
        assert main("takedown", "--root", str(root), *extra) == 2, extra
        lines = capsys.readouterr().err.strip().splitlines()
        assert needle in lines[-1] and lines[-1].startswith("pipeline.py takedown: error:"), lines
    assert outputs(root) == files and not (root / takedowns.LOG).exists()


def test_an_unreadable_log_stops_every_build(built, taken, tmp_path, capsys):
    root = copy(taken[0], tmp_path / "root")
    with open(root / takedowns.LOG, "a") as f:
        f.write('{"id": "x", "reason": "r", "videos": "not a list", "keys": []}\n')
    files = outputs(root)
    tree = str(built.parent / "tree")
    capsys.readouterr()
    assert main("build-shards", "--root", str(root), "--from-images", tree, "--max-samples", "10") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "takedowns.jsonl line 2 is not a takedown request" in line
    assert outputs(root) == files

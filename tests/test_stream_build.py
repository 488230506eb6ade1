"""The streaming build against the staged commands, over 22 real clips served on 127.0.0.1.

The clips (``stream_clips``: 20 that filter keeps, 2 near duplicates) are fetched by yt-dlp's real
download path from a loopback HTTP server, as the crawl tests fetch theirs. A staged run (crawl,
then build-shards, which chains filter and detect) is the reference; the streaming build must
write the same files, its shards byte for byte, with never more than ``--max-videos-on-disk``
raw videos on disk (sampled every few milliseconds by the test), on the local pool and on Ray,
and after kill -9 at three points and a rerun.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from processes import kill_group_when

from bench.scale_parts.loopback import CountingFiles
from bench.scale_parts.stream_clips import make_clips
from bench.stream_throughput import RawDisk
from common.fanout import fanned_files, fanned_path

REPO = Path(__file__).resolve().parent.parent
CONFIG = """
crawl: {workers: 2}
filter: {workers: 2}
detect: {detector: hog, keypoints: none, frame_step: 20, batch_size: 8, workers: 2}
shards: {max_samples: 8, workers: 2}
"""
TABLES = ("videos.parquet", "video_filter.parquet", "detections.parquet", "shards/index.parquet")


@pytest.fixture(scope="module")
def clips(videos_dir: Path, tmp_path_factory) -> list[Path]:
    return make_clips(tmp_path_factory.mktemp("stream_clips"), videos_dir)


@pytest.fixture(scope="module")
def server(clips: list[Path]):
    handler = functools.partial(CountingFiles, directory=clips[0].parent)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads, srv.requests = True, Counter()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, clips: list[Path], server) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("stream_inputs")
    (folder / "config.yaml").write_text(CONFIG)
    (folder / "urls.txt").write_text("".join(f"{server.base}/{clip.name}\n" for clip in clips))
    return {"config": folder / "config.yaml", "urls": folder / "urls.txt"}


def command(inputs: dict[str, Path], name: str, root: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "pipeline.py",
        name,
        "--root",
        str(root),
        "--config",
        str(inputs["config"]),
        *flags,
    ]


def run(inputs: dict[str, Path], name: str, root: Path, *flags: str) -> None:
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    done = subprocess.run(
        command(inputs, name, root, *flags), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def search_only(inputs: dict[str, Path], root: Path) -> None:
    run(inputs, "crawl", root, "--urls", str(inputs["urls"]), "--search-only")


@pytest.fixture(scope="module")
def staged(inputs: dict[str, Path], tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("staged")
    run(inputs, "crawl", root, "--urls", str(inputs["urls"]))
    run(inputs, "build-shards", root)
    statuses = pd.read_parquet(root / "video_filter.parquet")["status"].value_counts().to_dict()
    assert statuses == {"ok": 20, "near_duplicate": 2}  # the clips are what the docstring says
    return root


def assert_same_build(staged: Path, streamed: Path) -> None:
    """Every tar byte for byte; the tables, detections and stats equal; samples.parquet equal
    but for its source_id column (the video's absolute path, under each root)."""
    tars = sorted(p.name for p in (staged / "shards").glob("lup-*.tar"))
    assert len(tars) >= 4 and tars == sorted(p.name for p in (streamed / "shards").glob("lup-*.tar"))
    for name in tars:
        assert (staged / "shards" / name).read_bytes() == (streamed / "shards" / name).read_bytes(), name
    for table in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(staged / table), pd.read_parquet(streamed / table))
    staged_samples, streamed_samples = (
        pd.read_parquet(r / "shards/samples.parquet") for r in (staged, streamed)
    )
    for frame, root in ((staged_samples, staged), (streamed_samples, streamed)):
        frame["source_id"] = frame["source_id"].str.removeprefix(str(root.resolve()))
    pd.testing.assert_frame_equal(staged_samples, streamed_samples)
    assert (staged_samples["status"] == "ok").sum() > 25
    boxes = sorted(p.relative_to(staged) for p in fanned_files(staged / "detections"))
    assert len(boxes) == 20 and boxes == sorted(
        p.relative_to(streamed) for p in fanned_files(streamed / "detections")
    )
    for rel in boxes:
        pd.testing.assert_frame_equal(pd.read_parquet(staged / rel), pd.read_parquet(streamed / rel))
    assert json.loads((staged / "stats.json").read_text()) == json.loads(
        (streamed / "stats.json").read_text()
    )
    plans = [json.loads((r / "shards/plan.json").read_text()) for r in (staged, streamed)]
    # the fingerprint hashes each video's absolute path: the same plan under another root differs
    assert [{k: p[k] for k in ("source", "settings", "items")} for p in plans] == [
        {k: plans[0][k] for k in ("source", "settings", "items")}
    ] * 2


def test_two_videos_on_disk_at_most_and_the_staged_shards(inputs, staged, tmp_path):
    root = tmp_path / "stream"
    search_only(inputs, root)
    with RawDisk(root / "videos") as watch:
        run(inputs, "stream", root, "--max-videos-on-disk", "2", "--workers", "2")
    assert watch.looks > 100 and watch.files == 2  # two at once were seen, never three
    assert not list(fanned_files(root / "videos"))  # every raw video deleted after its cut
    assert_same_build(staged, root)


def test_on_ray_the_same(inputs, staged, tmp_path):
    pytest.importorskip("ray")
    root = tmp_path / "stream"
    search_only(inputs, root)
    with RawDisk(root / "videos") as watch:
        run(inputs, "stream", root, "--max-videos-on-disk", "2", "--workers", "2", "--engine", "ray")
    assert watch.looks > 100 and 1 <= watch.files <= 2
    assert_same_build(staged, root)


def durable_videos(root: Path) -> set[str]:
    """Videos whose every crop is in a complete shard (their record's last key <= the parts')."""
    parts = sorted((root / "shards" / "parts").glob("*.parquet"))
    last = pd.read_parquet(parts[-1])["key"].iloc[-1] if parts else None
    done = set()
    for path in fanned_files(root / "stream_records"):
        record = json.loads(path.read_text())
        if record["last_key"] is not None and last is not None and record["last_key"] <= last:
            done.add(record["video_id"])
    return done


def fetched_since(server, before: Counter) -> set[str]:
    """The clips (by file stem, their video id) requested since ``before``."""
    return {path.strip("/").removesuffix(".mp4") for path in server.requests - before}


def test_kill_at_three_points_then_rerun(inputs, staged, server, tmp_path):
    """kill -9 after the first video's record, after the first complete shard and after 16 videos;
    each rerun downloads no video whose crops were all in complete shards, and the last one ends
    with the staged build."""
    root = tmp_path / "stream"
    search_only(inputs, root)
    records, parts = root / "stream_records", root / "shards" / "parts"
    moments = {
        "first video recorded": lambda: any(fanned_files(records)),
        "first shard complete": lambda: parts.is_dir() and any(parts.glob("*.parquet")),
        "16 videos recorded": lambda: sum(1 for _ in fanned_files(records)) >= 16,
    }
    stream = command(inputs, "stream", root, "--max-videos-on-disk", "2", "--workers", "2")
    durable, before = set(), Counter(server.requests)
    for moment, ready in moments.items():
        status = kill_group_when(stream, REPO, lambda proc, ready=ready: ready(), timeout_s=300)
        assert status == -9, f"the run ended before {moment}"
        assert not fetched_since(server, before) & durable, moment
        durable, before = durable_videos(root), Counter(server.requests)
    assert len(durable) >= 3  # the last kill left crops in shards: the rerun must not fetch them
    with RawDisk(root / "videos") as watch:
        run(inputs, "stream", root, "--max-videos-on-disk", "2", "--workers", "2")
    assert watch.files <= 2
    assert not fetched_since(server, before) & durable
    assert_same_build(staged, root)


def test_bench_smoke(videos_dir, tmp_path):
    """``bench/stream_throughput.py --smoke``: both flows on 4 clips; the stream's shards equal the
    staged ones and it never held more than 2 raw videos, where the staged flow held all 4."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "bench/stream_throughput.py", "--smoke", "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "YOLO_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    staged, streamed = json.loads(out.read_text())["rows"]
    assert streamed["identical_shards"] is True
    assert staged["peak_raw_files"] == 4 and 1 <= streamed["peak_raw_files"] <= 2
    assert "videos per core-hour" in done.stdout


def test_a_video_whose_process_died_twice_is_a_crawl_error_and_leaves_nothing(tmp_path):
    """``stream.video.video_crashed``, what ``ordered_map`` (``tests/test_safety_probe_crash.py``)
    puts in place of a video whose task's process died, then died again alone: a crawl ``error``
    (the next run tries it again), no record, its raw and detections files gone."""
    from common.manifests import boxes
    from stream.video import Stages, raw_files, read_record, video_crashed

    root = tmp_path / "root"
    left = [fanned_path(root / "videos", "v1", name) for name in ("v1.mp4", "v1.f137.mp4.part")]
    left.append(boxes.path_of(root, "v1"))
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    other = fanned_path(root / "videos", "v10", "v10.mp4")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(b"x")
    stages = Stages(root, None, None, None, None)
    outcome = video_crashed((stages, {"video_id": "v1"}, None, None), "the process running it alone died")
    assert outcome.crawl["status"] == "error" and outcome.crawl["path"] is None
    assert outcome.crawl["reason"] == "processing it crashed: the process running it alone died"
    assert not any(path.exists() for path in left) and other.exists()
    assert raw_files(root, "v1") == [] and read_record(root, "v1") is None

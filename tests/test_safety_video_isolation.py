"""One video never stops detect for the others (issue 22, item 2).

A 2x2-pixel, 300-frame mp4 beside a real clip: filter drops it as ``too_small`` and detect writes
the real clip's boxes; kept anyway (a lowered minimum), OpenCV's HOG is never called on its frames
(below its 64x128 window ``detectMultiScale`` corrupts the heap and aborts the process). A video
whose decoding process dies (here: ``os.abort`` in ``read_frames`` for one file, standing in for
a decoder crash) ends as its own ``error`` row while the other videos are written exactly as in a
run without it, on the local pool and inside a Ray actor.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import detect.sampling
import pipeline
from collect.crawl import crawl
from collect.settings import CrawlSettings
from common.local_pool import DIED_ALONE
from common.manifests import boxes as box_file
from filter.probe import Probe
from filter.settings import FilterSettings
from filter.videos import decide, filter_videos

REPO = Path(__file__).resolve().parent.parent
REAL = "concourse-walkers.mp4"  # 340 frames, 640x360: kept by the default filter, 4 sampled frames
HOG = ["--detector", "hog", "--keypoints", "none"]
# frame sizes (width, height) at which OpenCV 4.13's HOG aborted, segfaulted or raised, one process each
BELOW_WINDOW = [(2, 2), (16, 32), (47, 128), (63, 64), (100, 64), (32, 200)]


def tiny_mp4(path: Path, size: int = 2, frames: int = 300) -> Path:
    """A ``size`` x ``size`` MPEG-4 clip of random pixels (not static, long enough for filter)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (size, size))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    writer.release()
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, YOLO_OFFLINE="1")
    cmd = [sys.executable, "pipeline.py", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def crawled(tmp_path_factory, videos_dir: Path) -> Path:
    """A root with ``videos.parquet``: the real clip and the 2x2 clip."""
    base = tmp_path_factory.mktemp("tiny")
    urls = base / "urls.txt"
    urls.write_text(f"{videos_dir / REAL}\n{tiny_mp4(base / 'tiny.mp4')}\n")
    crawl(CrawlSettings(urls=str(urls), workers=1), base / "root")
    return base / "root"


def ids(root: Path) -> tuple[str, str]:
    """(real clip's id, tiny clip's id) as crawl named them."""
    videos = pd.read_parquet(root / "videos.parquet")
    by_name = {Path(url).name: vid for url, vid in zip(videos["url"], videos["video_id"], strict=True)}
    return by_name[REAL], by_name["tiny.mp4"]


def filtered_and_detected(
    crawled: Path, base: Path, **least: int
) -> tuple[Path, subprocess.CompletedProcess]:
    """A copy of ``crawled`` through filter (``FilterSettings(**least)``) and ``pipeline.py detect
    --detector hog``; the root and the detect process."""
    root = base / "root"
    shutil.copytree(crawled, root)
    filter_videos(FilterSettings(workers=1, **least), root)
    return root, run_cli("detect", "--root", str(root), *HOG, "--workers", "2")


@pytest.fixture(scope="module")
def dropped(crawled: Path, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The default filter, which drops the tiny clip."""
    return filtered_and_detected(crawled, tmp_path_factory.mktemp("dropped"))


@pytest.fixture(scope="module")
def kept(crawled: Path, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A filter whose minimum is lowered to 1x1 px, which keeps the tiny clip."""
    return filtered_and_detected(
        crawled, tmp_path_factory.mktemp("kept"), min_frame_width=1, min_frame_height=1
    )


def test_a_2x2_video_is_dropped_as_too_small_and_the_real_boxes_are_written(dropped):
    root, proc = dropped
    real, tiny = ids(root)
    table = pd.read_parquet(root / "video_filter.parquet").set_index("video_id")
    assert (table.loc[real, "status"], table.loc[real, "keep"]) == ("ok", True)
    assert (table.loc[tiny, "status"], table.loc[tiny, "keep"]) == ("too_small", False)
    assert table.loc[tiny, "reason"] == "2x2 frames, smaller than 64x128"
    assert (table.loc[tiny, "n_frames"], table.loc[tiny, "width"]) == (300, 2)  # not too short
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = pd.read_parquet(root / "detections.parquet").set_index("video_id")
    assert summary.index.tolist() == [real]
    assert (summary.loc[real, "status"], summary.loc[real, "frames_sampled"]) == ("ok", 4)
    boxes = pd.read_parquet(box_file.path_of(root, real))
    assert len(boxes) == summary.loc[real, "boxes"] > 0 and set(boxes["frame"]) <= {0, 100, 200, 300}


def test_a_kept_tiny_video_gets_no_hog_boxes_and_the_real_ones_do_not_change(kept, dropped):
    root, proc = kept
    real, tiny = ids(root)
    assert pd.read_parquet(root / "video_filter.parquet")["status"].tolist() == ["ok", "ok"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = pd.read_parquet(root / "detections.parquet").set_index("video_id")
    assert summary["status"].tolist() == ["ok", "ok"]
    assert (summary.loc[tiny, "frames_sampled"], summary.loc[tiny, "boxes"]) == (3, 0)  # frames 0, 100, 200
    both = [pd.read_parquet(box_file.path_of(r, real)) for r in (root, dropped[0])]
    pd.testing.assert_frame_equal(*both)  # its batches held the tiny frames here, not there


@pytest.mark.parametrize(
    ("width", "height", "status"),
    [
        (64, 128, "ok"),
        (63, 128, "too_small"),
        (64, 127, "too_small"),
        (1920, 1080, "ok"),
        (2, 2, "too_small"),
    ],
)
def test_too_small_is_the_hog_window_at_the_exact_edge(width, height, status):
    probe = Probe(n_frames=300, width=width, height=height, static_diff=25.0)
    assert decide(probe, "street walk", FilterSettings())[0] == status
    lowered = FilterSettings(min_frame_width=width, min_frame_height=height)
    assert decide(probe, "street walk", lowered)[0] == "ok"


def test_hog_returns_no_boxes_below_its_window_and_still_looks_at_the_window(shared_data):
    """In a child process: on today's OpenCV these sizes abort the process that asks."""
    code = (
        "import sys, cv2, numpy as np, glob\n"
        "from common.detectors.hog import HogDetector\n"
        "d = HogDetector()\n"
        "rng = np.random.default_rng(0)\n"
        f"for w, h in {BELOW_WINDOW!r}:\n"
        "    print(len(d([rng.integers(0, 256, (h, w, 3), dtype=np.uint8)])[0]), flush=True)\n"
        "crops = sorted(glob.glob(sys.argv[1] + '/*'))[:20]\n"
        "windows = [cv2.imread(p)[16:144, 16:80] for p in crops]  # the 64x128 person window\n"
        "print(sum(len(b) > 0 for b in d(windows)), {w.shape for w in windows})\n"
    )
    inria = shared_data / "unlabeled" / "INRIA"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(inria)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split("\n")
    assert lines[: len(BELOW_WINDOW)] == ["0"] * len(BELOW_WINDOW)
    found, shapes = lines[len(BELOW_WINDOW)].split(" ", 1)
    assert shapes == "{(128, 64, 3)}" and int(found) >= 5  # frames of exactly the window are searched


def kept_table(root: Path, videos: list[tuple[str, Path, int]]) -> Path:
    """A ``video_filter.parquet`` keeping ``videos`` (id, path, frames)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [
        {"video_id": v, "path": str(p), "keep": True, "status": "ok", "n_frames": n} for v, p, n in videos
    ]
    pd.DataFrame(rows).to_parquet(root / "video_filter.parquet")
    return root


def aborting_read_frames(real_read_frames):
    """``read_frames`` that aborts its process on the second frame of a file named ``crash*``."""

    def read_frames(path, wanted):
        for n, item in enumerate(real_read_frames(path, wanted)):
            if n == 1 and Path(path).name.startswith("crash"):
                faulthandler.disable()  # pytest's handler would print this process's stack
                os.abort()
            yield item

    return read_frames


@pytest.fixture(scope="module")
def crash_case(tmp_path_factory, videos_dir: Path) -> tuple[list, Path]:
    """Three kept videos, the middle one a copy of a real clip named ``crash.mp4``; and a root
    holding the other two's boxes from a run without it (decoded in the main process)."""
    base = tmp_path_factory.mktemp("crash")
    shutil.copy(videos_dir / REAL, base / "crash.mp4")
    videos = [
        ("street", videos_dir / "street-crossing.mp4", 671),
        ("crash", base / "crash.mp4", 340),
        ("concourse", videos_dir / REAL, 340),
    ]
    alone = kept_table(base / "alone", [videos[0], videos[2]])
    assert pipeline.main(["detect", "--root", str(alone), *HOG, "--workers", "0"]) == 0
    return videos, alone


def same_boxes(root: Path, reference: Path, vids: tuple[str, ...]) -> None:
    for vid in vids:
        got, want = (pd.read_parquet(box_file.path_of(r, vid)) for r in (root, reference))
        pd.testing.assert_frame_equal(got, want)


def test_a_video_that_kills_its_decoding_process_is_its_own_error_row(crash_case, tmp_path, monkeypatch):
    videos, alone = crash_case
    # DataLoader workers are forked from this process, so they decode with the patched reader
    monkeypatch.setattr(detect.sampling, "read_frames", aborting_read_frames(detect.sampling.read_frames))
    root = kept_table(tmp_path / "root", videos)
    assert pipeline.main(["detect", "--root", str(root), *HOG, "--workers", "2"]) == 0
    summary = pd.read_parquet(root / "detections.parquet").set_index("video_id")
    assert summary.index.tolist() == ["street", "crash", "concourse"]
    assert summary["status"].tolist() == ["ok", "error", "ok"]
    assert summary.loc["crash", "reason"] == DIED_ALONE
    assert sorted(p.name for p in box_file.files(root)) == ["concourse.parquet", "street.parquet"]
    same_boxes(root, alone, ("street", "concourse"))  # the frames in flight at the crash were redone
    assert multiprocessing.active_children() == []  # no decoding process left behind


RAY_DETECT = """
import os, sys
from pathlib import Path
import ray
import pipeline

def install():  # in every Ray worker: the aborting reader (the test's, rebuilt here)
    import detect.sampling
    real = detect.sampling.read_frames
    def read_frames(path, wanted):
        for n, item in enumerate(real(path, wanted)):
            if n == 1 and Path(path).name.startswith("crash"):
                os.abort()
            yield item
    detect.sampling.read_frames = read_frames

ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
         runtime_env={"worker_process_setup_hook": install})
args = ["detect", "--root", sys.argv[1], "--detector", "hog", "--keypoints", "none", "--engine", "ray"]
sys.exit(pipeline.main(args + ["--ray-actors", "1"]))
"""


def test_on_ray_a_crash_takes_only_its_video_not_the_actor(crash_case, tmp_path):
    """One CPU actor takes the three videos in turn; the crash is in its decoding child, not in it."""
    pytest.importorskip("ray")
    videos, alone = crash_case
    root = kept_table(tmp_path / "root", videos)
    env = dict(os.environ, YOLO_OFFLINE="1", RAY_DEDUP_LOGS="0")
    proc = subprocess.run(
        [sys.executable, "-c", RAY_DETECT, str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_parquet(root / "detections.parquet").set_index("video_id")
    assert summary["status"].tolist() == ["ok", "error", "ok"]
    assert summary.loc["crash", "reason"] == DIED_ALONE
    same_boxes(root, alone, ("street", "concourse"))

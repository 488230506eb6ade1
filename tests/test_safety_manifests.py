"""A damaged or foreign manifest ends a stage with one error line and exit 2, never a traceback.

Each case corrupts one file of a real workspace (one sample video crawled and filtered) and runs
the real ``python pipeline.py <stage>`` on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from collect.crawl import crawl
from collect.settings import CrawlSettings
from common.errors import UsageError
from common.manifests import boxes as box_file
from filter.settings import FilterSettings
from filter.videos import filter_videos

REPO = Path(__file__).resolve().parent.parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")  # common.log's format
KEPT = "concourse-walkers.mp4"  # 340 frames: the default filter keeps it


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, videos_dir: Path) -> Path:
    """A root with ``videos.parquet`` and ``video_filter.parquet`` keeping one video."""
    base = tmp_path_factory.mktemp("manifests")
    urls = base / "urls.txt"
    urls.write_text(f"{videos_dir / KEPT}\n")
    root = base / "root"
    crawl(CrawlSettings(urls=str(urls), workers=1), root)
    filter_videos(FilterSettings(workers=1), root)
    assert pd.read_parquet(root / "video_filter.parquet")["keep"].tolist() == [True]
    return root


def damaged(workspace: Path, tmp_path: Path, name: str, content: bytes | pd.DataFrame) -> Path:
    """A copy of ``workspace`` whose file ``name`` holds ``content`` (bytes, or a table)."""
    root = tmp_path / "root"
    shutil.copytree(workspace, root)
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        (root / name).write_bytes(content)
    else:
        content.to_parquet(root / name, index=False)
    return root


def refused(stage: str, root: Path, *args: str) -> str:
    """Run ``pipeline.py <stage>``: exit 2, no traceback, one error line (besides log lines)."""
    proc = subprocess.run(
        [sys.executable, "pipeline.py", stage, "--root", str(root), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(errors) == 1 and errors[0].startswith(f"pipeline.py {stage}: error: "), proc.stderr
    return errors[0]


def truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def test_crawl_refuses_a_damaged_manifest(workspace, tmp_path, videos_dir: Path):
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{videos_dir / KEPT}\n")
    rows = pd.read_parquet(workspace / "videos.parquet")
    cases = {
        "wrong type": rows.assign(width="wide"),  # a number column holding text
        "no status": rows.assign(status=None),
        "truncated": truncated(workspace / "videos.parquet"),
    }
    for i, (case, content) in enumerate(cases.items()):
        root = damaged(workspace, tmp_path / str(i), "videos.parquet", content)
        line = refused("crawl", root, "--urls", str(urls))
        assert str(root / "videos.parquet") in line and "run crawl again" in line, case


def test_filter_refuses_a_damaged_manifest(workspace, tmp_path):
    rows = pd.read_parquet(workspace / "videos.parquet")
    cases = {
        "garbage": os.urandom(512),
        "an id that is a path": rows.assign(video_id="../../escaped"),  # would name a file outside
    }
    for i, (case, content) in enumerate(cases.items()):
        root = damaged(workspace, tmp_path / str(i), "videos.parquet", content)
        line = refused("filter", root)
        assert str(root / "videos.parquet") in line, case
        assert (root / "video_filter.parquet").read_bytes() == (
            workspace / "video_filter.parquet"
        ).read_bytes()
        assert not (root.parent / "escaped.json").exists()  # root/filter_probes/../../escaped.json


def test_detect_refuses_a_damaged_filter_table(workspace, tmp_path):
    root = damaged(workspace, tmp_path / "garbage", "video_filter.parquet", os.urandom(512))
    line = refused("detect", root)
    assert str(root / "video_filter.parquet") in line and "run filter again" in line
    assert not (root / "detections.parquet").exists()
    from detect.inputs import kept_videos

    table = pd.read_parquet(workspace / "video_filter.parquet")
    cases = {
        "keep as text": table.assign(keep="no"),  # "no" would be truthy
        "no frame count": table.assign(n_frames=None),
        "an id that is a path": table.assign(video_id="../../escaped"),  # would name a file outside
    }
    for case, content in cases.items():  # the same UsageError, without a process each
        root = damaged(workspace, tmp_path / case.replace(" ", "_"), "video_filter.parquet", content)
        with pytest.raises(UsageError, match="run filter again"):
            kept_videos(root)


@pytest.mark.parametrize("stage", ["detect", "build-shards"])
def test_a_damaged_detections_file_is_refused(workspace, tmp_path, stage):
    """A garbage ``detections/<id>.parquet`` of a kept video: detect, and build-shards which
    chains it, stop before any work with one line naming the file."""
    name = box_file.path_of(Path(), Path(KEPT).stem).as_posix()
    root = damaged(workspace, tmp_path, name, os.urandom(512))
    line = refused(stage, root)
    assert str(root / name) in line and "delete it" in line
    assert not (root / "detections.parquet").exists()
    assert not (root / "shards").exists() or not list((root / "shards").glob("*.tar"))

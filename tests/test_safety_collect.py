"""crawl --urls on hostile or unlucky lists: case-sensitive ids, refused schemes, no '..' paths."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from collect.crawl import crawl
from collect.settings import CrawlSettings

REPO = Path(__file__).resolve().parent.parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")  # common.log's format


def refused(urls: Path, root: Path) -> str:
    """``pipeline.py crawl --urls``: exit 2, no traceback, one error line, nothing fetched."""
    proc = subprocess.run(
        [sys.executable, "pipeline.py", "crawl", "--urls", str(urls), "--root", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(errors) == 1 and errors[0].startswith("pipeline.py crawl: error: urls: "), proc.stderr
    assert not (root / "videos").exists() and not (root / "videos.parquet").exists()
    return errors[0]


def test_youtube_ids_that_differ_only_in_case_are_two_videos(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ\n"
        "https://www.youtube.com/watch?v=dqw4w9wgxcq\n"
        "HTTPS://WWW.YouTube.com/watch?v=dQw4w9WgXcQ\n"  # line 1 again: scheme and host ignore case
        "https://youtu.be/Ab-cD_e1234\n"
        "https://youtu.be/ab-cd_e1234\n"
    )
    root = tmp_path / "root"
    summary = crawl(CrawlSettings(urls=str(urls), search_only=True), root)  # ids need no network
    df = pd.read_parquet(root / "videos.parquet")
    assert list(df["video_id"]) == ["dQw4w9WgXcQ", "dqw4w9wgxcq", "Ab-cD_e1234", "ab-cd_e1234"]
    assert summary["urls"] == {"listed": 4, "new_candidates": 4}
    urls.write_text(urls.read_text() + "https://WWW.YOUTUBE.COM/watch?v=dqw4w9wgxcq\n")
    assert crawl(CrawlSettings(urls=str(urls), search_only=True), root)["urls"]["new_candidates"] == 0


def test_file_urls_and_other_schemes_are_refused(tmp_path, videos_dir: Path):
    sample = videos_dir / "people-detection.gif"
    for i, url in enumerate([sample.as_uri(), "ftp://127.0.0.1/clip.mp4"]):
        urls = tmp_path / f"urls{i}.txt"
        urls.write_text(f"{sample}\n{url}\n")  # a valid first line: nothing is fetched before the check
        line = refused(urls, tmp_path / f"root{i}")
        assert f"{urls}:2: " in line and "refused" in line


def test_local_paths_may_not_climb_with_dotdot(tmp_path, videos_dir: Path):
    sample = videos_dir / "people-detection.gif"
    lists, clips = tmp_path / "lists", tmp_path / "lists" / "clips"
    clips.mkdir(parents=True)
    shutil.copyfile(sample, clips / sample.name)
    shutil.copyfile(sample, tmp_path / sample.name)
    climbing = lists / "climbing.txt"
    climbing.write_text(f"../{sample.name}\n")
    line = refused(climbing, tmp_path / "refused")
    assert f"{climbing}:1: " in line and "'..'" in line and "absolute path" in line

    allowed = lists / "allowed.txt"  # inside the list's folder, and absolute (the demo's form)
    explicit = f"{lists}/../{sample.name}"  # `ls -d $PWD/../x/*` writes such lines
    allowed.write_text(f"clips/{sample.name}\n{sample}\n{explicit}\n")
    root = tmp_path / "root"
    crawl(CrawlSettings(urls=str(allowed), workers=1), root)
    df = pd.read_parquet(root / "videos.parquet")
    assert list(df["url"]) == [str(clips / sample.name), str(sample), explicit]
    assert list(df["status"]) == ["ok", "ok", "ok"]

"""crawl --cities: the search path on recorded ytsearch results, and a clear failure offline."""

from __future__ import annotations

import copy
import json
import logging
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yt_dlp

import collect.search
from collect.crawl import crawl
from collect.settings import CrawlSettings
from common.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "ytsearch_flat.json"


@pytest.fixture()
def recorded_search(monkeypatch):
    """``YoutubeDL.extract_info`` answering ``ytsearchN:<query>`` from the fixture; returns the call log."""
    results = json.loads(FIXTURE.read_text())["results"]
    calls: list[tuple[str, dict]] = []

    def extract_info(self, url, download=True, *args, **kwargs):
        calls.append((url, dict(self.params)))
        n, query = re.fullmatch(r"ytsearch(\d+):(.*)", url).groups()
        result = copy.deepcopy(results[query])
        result["entries"] = result["entries"][: int(n)]
        return result

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", extract_info)
    monkeypatch.setattr(collect.search, "check_youtube_reachable", lambda cfg: None)
    return results, calls


def cities_file(tmp_path: Path) -> Path:
    path = tmp_path / "cities.txt"
    path.write_text("# two cities\n\nTokyo\nParis  # comment after a name\ntokyo\n")
    return path


def test_search_rows_from_recorded_results(tmp_path, recorded_search, caplog):
    results, calls = recorded_search
    cfg = CrawlSettings(cities=str(cities_file(tmp_path)), per_city=4, search_only=True)
    with caplog.at_level(logging.WARNING):
        summary = crawl(cfg, tmp_path / "root")
    assert any("duplicate of line 3" in r.message for r in caplog.records)  # 'tokyo' repeats 'Tokyo'

    queries = [url.split(":", 1)[1] for url, _ in calls]
    assert queries == [q.format(city=c) for c in ("Tokyo", "Paris") for q in cfg.queries]
    assert all(url.startswith("ytsearch4:") for url, _ in calls)
    assert all(params["extract_flat"] == "in_playlist" for _, params in calls)

    df = pd.read_parquet(tmp_path / "root" / "videos.parquet")
    # Round robin over a city's queries; the repeated, the live and the other city's ids are dropped.
    expected = [
        ("tKy0sv00001", "Tokyo", "Tokyo streetview"),
        ("tKy0wt00007", "Tokyo", "Tokyo walking tour"),
        ("tKy0sc00005", "Tokyo", "Tokyo street scene"),
        ("tKy0wt-0008", "Tokyo", "Tokyo walking tour"),
        ("pAr1sv00001", "Paris", "Paris streetview"),
        ("pAr1sc00003", "Paris", "Paris street scene"),
        ("pAr1sv_0002", "Paris", "Paris streetview"),
    ]
    assert list(zip(df["video_id"], df["city"], df["query"], strict=True)) == expected
    entries = {e["id"]: e for r in results.values() for e in r["entries"]}
    for row in df.itertuples():
        entry = entries[row.video_id]
        assert (row.url, row.title, row.channel, row.duration_s) == (
            entry["url"],
            entry["title"],
            entry["channel"],
            entry["duration"],
        )
    assert set(df["status"]) == {"pending"} and df["path"].isna().all()
    assert summary["search"] == {
        "queries": 6,
        "results": 10,
        "duplicates_dropped": 2,
        "live_skipped": 1,
        "new_candidates": 7,
        "failed_queries": 0,
        "cities_below_target": 1,
    }


def test_rerun_uses_the_search_cache(tmp_path, recorded_search):
    _, calls = recorded_search
    cfg = CrawlSettings(cities=str(cities_file(tmp_path)), per_city=4, search_only=True)
    crawl(cfg, tmp_path / "root")
    first = pd.read_parquet(tmp_path / "root" / "videos.parquet")
    n_calls = len(calls)
    summary = crawl(cfg, tmp_path / "root")
    assert len(calls) == n_calls  # every query answered from root/search/*.json
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "root" / "videos.parquet"), first)
    assert summary["search"]["new_candidates"] == 0 and summary["videos"] == len(first)


def closed_proxy() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_youtube_is_one_clear_line(tmp_path):
    # A real attempt through a proxy that refuses connections: offline on any machine, and fast.
    cfg = CrawlSettings(cities=str(cities_file(tmp_path)), proxy=closed_proxy(), socket_timeout=2)
    with pytest.raises(UsageError, match="cannot reach YouTube") as err:
        crawl(cfg, tmp_path / "root")
    assert "\n" not in str(err.value)

    cmd = [sys.executable, "pipeline.py", "crawl", "--cities", str(cities_file(tmp_path))]
    cmd += ["--root", str(tmp_path / "cli"), "--proxy", closed_proxy(), "--socket-timeout", "2"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("pipeline.py crawl: error: cannot reach YouTube")
    assert "Traceback" not in done.stderr and done.stdout == ""

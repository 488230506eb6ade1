"""Issue 23 at the video level: what made crawl and filter grow badly at 73,000 videos, fixed.

- ``common.fanout``: one file per video spread over 256 bucket folders (``videos/``,
  ``video_info/``, ``filter_probes/``), never tens of thousands in one;
- ``collect.ytdl.DownloadArchive``: yt-dlp's archive read once, then only what was appended, where a
  new ``YoutubeDL`` per video re-read the whole file;
- ``collect.crawl.fetch_all``: manifest rewrites take at most ``SAVE_SHARE`` of the run;
- ``common.manifests.videos.load``: a column at a time, the same rows as value by value;
- the inputs of ``bench/scale_parts/videos.py``: its clips (what filter makes of them) and its
  loopback search through crawl and real yt-dlp.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yt_dlp

import collect.crawl
import collect.search
import collect.ytdl
from bench.scale_parts.loopback import Catalog, LoopbackServer, answer_searches
from bench.scale_parts.video_clips import FRAMES, SHORT, SIZE, make_clips
from collect.crawl import crawl
from collect.settings import CrawlSettings
from collect.ytdl import DownloadArchive, download_archive
from common.fanout import bucket, fanned_files, fanned_path
from common.manifests import videos as manifest
from filter.phash import mean_distances
from filter.probe import probe_video


def youtube_ids(n: int) -> list[str]:
    return [base64.urlsafe_b64encode(hashlib.sha1(str(i).encode()).digest()).decode()[:11] for i in range(n)]


def test_73000_ids_fill_256_buckets_evenly():
    counts = Counter(bucket(v) for v in youtube_ids(73_000))
    assert len(counts) == 256
    assert max(counts.values()) < 400 < 50_000  # ~285 a folder, the limit far away
    assert all(len(b) == 2 and int(b, 16) < 256 for b in counts)


def test_fanned_paths_and_listing(tmp_path):
    path = fanned_path(tmp_path / "videos", "dQw4w9WgXcQ", "dQw4w9WgXcQ.mp4")
    assert path.relative_to(tmp_path).as_posix() == "videos/3d/dQw4w9WgXcQ.mp4"
    assert fanned_path(tmp_path, "a") == tmp_path / hashlib.sha1(b"a").hexdigest()[:2] / "a"
    for key in ("b", "a", "c"):
        fanned_path(tmp_path / "f", key).parent.mkdir(parents=True, exist_ok=True)
        fanned_path(tmp_path / "f", key).write_text(key)
    (tmp_path / "f" / "not-a-bucket").mkdir()
    (tmp_path / "f" / "not-a-bucket" / "x").write_text("x")
    listed = list(fanned_files(tmp_path / "f"))
    assert sorted(p.name for p in listed) == ["a", "b", "c"]
    assert [p.parent.name for p in listed] == sorted(p.parent.name for p in listed)
    assert list(fanned_files(tmp_path / "absent")) == []
    with pytest.raises(ValueError):
        bucket("a", 0)


def test_archive_reads_each_byte_once(tmp_path, monkeypatch):
    """Lines appended by others are seen, a line still being written is not, and every lookup
    after the first reads only what was appended since (an unfinished line again)."""
    path = tmp_path / "download_archive.txt"
    path.write_text("".join(f"generic v{i}\n" for i in range(1000)))
    read = []

    class Counting:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def seek(self, offset: int) -> int:
            return self.handle.seek(offset)

        def read(self, size: int = -1) -> bytes:
            data = self.handle.read(size)
            read.append(len(data))
            return data

    def counting_open(file, mode="r", *args, **kwargs):
        assert mode == "rb"
        return Counting(builtins.open(file, mode, *args, **kwargs))

    monkeypatch.setattr(collect.ytdl, "open", counting_open, raising=False)
    archive = DownloadArchive(path)
    for i in range(200):  # a crawl's lookups: one YoutubeDL per video
        assert f"generic v{i}" in archive and "generic nope" not in archive
    assert len(archive) == 1000 and sum(read) == path.stat().st_size
    with open(path, "a") as f:
        f.write("generic later\ngeneric half")  # another process, mid-line
    assert "generic later" in archive and "generic half" not in archive
    with open(path, "a") as f:
        f.write("way\n")
    assert "generic halfway" in archive
    assert read[1:] == [26, 12, 16]  # only what was appended since; the unfinished line again
    path.write_text("generic v1\n")  # lines deleted by hand: read anew
    assert "generic v1" in archive and "generic v2" not in archive and len(archive) == 1


def test_archive_is_shared_and_written_once_per_download(tmp_path):
    path = tmp_path / "download_archive.txt"
    assert download_archive(path) is download_archive(tmp_path / "." / "download_archive.txt")
    archive = download_archive(path)
    assert not archive and len(archive) == 0  # no file yet: yt-dlp's "if not self.archive"
    threads = [threading.Thread(target=archive.add, args=(f"generic t{i}",)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert sorted(lines) == sorted(f"generic t{i}" for i in range(50)) and len(archive) == 50
    assert "generic t7" in DownloadArchive(path)  # what a fresh process (a Ray task) reads


def test_a_download_is_archived_and_a_lost_file_named(tmp_path, videos_dir: Path):
    """Through real yt-dlp: each finished download is one archive line; a file deleted afterwards
    is not fetched again silently but named (the archive still lists it), and nothing else is asked."""
    catalog = Catalog(cities=1, per_city=20)
    ids = [v for v in (catalog.video_id(0, j) for j in range(20)) if not catalog.missing(v)][:2]
    with LoopbackServer(catalog, [videos_dir / "street-crossing.mp4"]) as server:
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"{server.base}/v/{v}.mp4\n" for v in ids))
        crawl(CrawlSettings(urls=str(urls), workers=2), tmp_path / "r")
        archived = (tmp_path / "r" / "download_archive.txt").read_text().splitlines()
        assert sorted(archived) == sorted(f"generic {v}" for v in ids)
        fanned_path(tmp_path / "r" / "videos", ids[0], f"{ids[0]}.mp4").unlink()
        asked = server.requests
        crawl(CrawlSettings(urls=str(urls), workers=2), tmp_path / "r")
        assert server.requests == asked + 1  # the lost one's extraction only; the other is done
    df = pd.read_parquet(tmp_path / "r" / "videos.parquet").set_index("video_id")
    assert (
        df.loc[ids[0], "status"] == "error" and "listed in download_archive.txt" in df.loc[ids[0], "reason"]
    )
    assert df.loc[ids[1], "status"] == "ok"


def test_manifest_rewrites_take_a_bounded_share(tmp_path, monkeypatch):
    """However slow a rewrite, the run spends at most SAVE_SHARE of its time on them (plus the
    last one and the final one); with a fixed interval a 73,000-row manifest made crawl quadratic."""
    monkeypatch.setattr(collect.crawl, "SAVE_EVERY_S", 0.0)
    durations: list[float] = []

    def slow_save(root: Path, rows: list) -> None:
        began = time.monotonic()
        time.sleep(0.02)
        durations.append(time.monotonic() - began)

    def quick(cfg, row, root, stop):
        time.sleep(0.002)
        return {"status": "error", "reason": "test"}, False

    monkeypatch.setattr(collect.crawl.manifest, "save", slow_save)
    monkeypatch.setattr(collect.crawl, "process", quick)
    rows = [manifest.new_row(f"v{i}", f"http://127.0.0.1:9/v{i}.mp4") for i in range(300)]
    began = time.monotonic()
    run, fetched = collect.crawl.fetch_all(
        CrawlSettings(urls="x", workers=2), rows, list(range(300)), tmp_path
    )
    elapsed = time.monotonic() - began
    assert run == Counter({"error": 300}) and fetched == 0
    assert all(r["status"] == "error" for r in rows)
    assert 2 <= len(durations) < 300 / 2
    assert sum(durations) <= collect.crawl.SAVE_SHARE * elapsed + 2 * max(durations)


def plain_rows(path: Path) -> list[dict]:
    """The reference: every value converted one at a time (what load() did before)."""
    df = manifest.read_frame(path)
    out = []
    for record in df.to_dict("records"):
        row = dict.fromkeys(manifest.COLUMNS)
        for k, v in record.items():
            if k in manifest.COLUMNS:
                row[k] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
        out.append(row)
    return out


def test_load_gives_the_rows_value_by_value_conversion_gives(tmp_path):
    rows = [
        manifest.new_row(
            f"v{i}",
            f"http://x/{i}",
            city=None if i % 3 else "Oslo",
            title=None if i % 5 == 0 else f"walk {i}",
            duration_s=None if i % 7 == 0 else 1.5 * i,
        )
        for i in range(500)
    ]
    for r in rows[::2]:
        r.update(status="ok", path=f"videos/{r['video_id']}.mp4", width=228, height=128, fps=25.0)
        r.update(n_frames=104, codec="h264", bytes=35_000)
    manifest.save(tmp_path, rows)
    loaded = manifest.load(tmp_path)
    assert loaded == rows == plain_rows(tmp_path / manifest.MANIFEST)
    types = {(k, type(v)) for r in loaded for k, v in r.items()}
    assert ("n_frames", int) in types and ("fps", float) in types and ("title", str) in types
    assert {t for k, t in types if k == "width"} == {int, type(None)}
    old = pd.read_parquet(tmp_path / manifest.MANIFEST).drop(columns=["country", "vname"])
    old.to_parquet(tmp_path / manifest.MANIFEST, index=False)  # written before those columns
    assert manifest.load(tmp_path) == rows


def test_loopback_search_through_crawl(tmp_path, monkeypatch):
    """The bench's search answers, through real yt-dlp and crawl: every city gets per_city
    distinct videos, repeats across queries dropped, live streams skipped."""
    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", yt_dlp.YoutubeDL.extract_info)
    monkeypatch.setattr(collect.search, "YOUTUBE", collect.search.YOUTUBE)
    catalog = Catalog(cities=3, per_city=150)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not used by a search")
    cities = tmp_path / "cities.txt"
    cities.write_text("".join(catalog.city(c) + "\n" for c in range(3)))
    with LoopbackServer(catalog, [clip]) as server:
        answer_searches(server.base)
        summary = crawl(CrawlSettings(cities=str(cities), per_city=150, search_only=True), tmp_path / "r")
    df = pd.read_parquet(tmp_path / "r" / "videos.parquet")
    assert len(df) == 450 == df["video_id"].nunique() and set(df["status"]) == {"pending"}
    assert Counter(df["city"]) == {catalog.city(c): 150 for c in range(3)}
    assert df["url"].str.fullmatch(r"http://127\.0\.0\.1:\d+/v/[A-Za-z0-9_-]{11}\.mp4").all()
    assert summary["search"]["duplicates_dropped"] > 0 and summary["search"]["live_skipped"] > 0
    assert summary["search"]["queries"] == 9 and summary["search"]["cities_below_target"] == 0


def test_bench_clips_are_what_the_filter_rules_see(tmp_path, videos_dir: Path):
    """The bench's clips: moving ones that filter keeps and tells apart (a mirrored window is no
    near duplicate of its original), a static one and a short one; made once, then reused."""
    clips = make_clips(tmp_path / "clips", videos_dir, 4)
    assert [p.name for p in clips[:2]] == [
        "one-by-one-person-detection-0000.mp4",
        "one-by-one-person-detection-0000-mirrored.mp4",
    ]
    assert [p.name for p in clips[4:]] == ["static.mp4", "short.mp4"]
    probes = [probe_video(p, 5, 64) for p in clips]
    assert [p.n_frames for p in probes] == [FRAMES] * 5 + [SHORT]
    assert all((p.width, p.height) == SIZE and not p.error for p in probes)
    assert all(p.static_diff > 1.0 for p in probes[:4]) and probes[4].static_diff <= 1.0
    signatures = np.array([[int(h, 16) for h in p.hashes] for p in probes[:4]], dtype=np.uint64)
    for i, signature in enumerate(signatures):  # no two within filter's threshold, mirrored pair included
        assert (np.delete(mean_distances(signature, signatures), i) > 6).all()
    mtimes = [p.stat().st_mtime_ns for p in clips]
    assert make_clips(tmp_path / "clips", videos_dir, 4) == clips
    assert [p.stat().st_mtime_ns for p in clips] == mtimes

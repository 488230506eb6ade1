"""crawl --urls through yt-dlp's real download path, against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import filecmp
import functools
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import pandas as pd
import pytest
from processes import kill_group_when

from bench.scale_parts.loopback import QuietFiles
from collect.crawl import crawl
from collect.settings import CrawlSettings
from common.fanout import fanned_files, fanned_path

REPO = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024


class VideoHandler(QuietFiles):
    """Serves the sample videos; counts requests; can throttle a path or answer 429 for it."""

    def do_GET(self) -> None:
        self.server.requests[self.path] += 1
        if self.path in self.server.busy:
            self.send_response(429)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def copyfile(self, source, outputfile) -> None:
        delay = self.server.slow.get(self.path)
        if delay is None:
            return super().copyfile(source, outputfile)
        while chunk := source.read(CHUNK):
            outputfile.write(chunk)
            time.sleep(delay)


@pytest.fixture(scope="module")
def server(videos_dir: Path):
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(VideoHandler, directory=videos_dir)
    )
    srv.daemon_threads = True
    srv.requests, srv.slow, srv.busy = Counter(), {}, set()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def samples(videos_dir: Path) -> list[Path]:
    return sorted(p for p in videos_dir.iterdir() if p.suffix in (".mp4", ".gif"))


def write_urls(path: Path, urls: list[str]) -> Path:
    path.write_text("# sample videos over loopback\n" + "".join(u + "\n" for u in urls))
    return path


def stored(root: Path, src: Path) -> Path:
    """Where crawl keeps the file of ``src`` (id = its stem): ``videos/<bucket>/<name>``."""
    return fanned_path(root / "videos", src.stem, src.name)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, server, videos_dir: Path):
    """One complete crawl of every sample plus a missing URL (the 404)."""
    base = tmp_path_factory.mktemp("crawl_http")
    names = [p.name for p in samples(videos_dir)] + ["missing.mp4"]
    urls = write_urls(base / "urls.txt", [f"{server.base}/{n}" for n in names])
    root = base / "root"
    summary = crawl(CrawlSettings(urls=str(urls), workers=2), root)
    return {"urls": urls, "root": root, "summary": summary, "df": pd.read_parquet(root / "videos.parquet")}


def test_manifest_rows_and_files(reference, videos_dir: Path):
    df, root = reference["df"], reference["root"]
    sources = samples(videos_dir)
    assert list(df["video_id"]) == [p.stem for p in sources] + ["missing"]
    ok = df[df["status"] == "ok"]
    assert len(ok) == len(sources)
    for row, src in zip(ok.itertuples(), sources, strict=True):
        assert row.path == stored(root, src).relative_to(root).as_posix()
        assert row.path.startswith("videos/") and row.path.count("/") == 2  # fanned out, one bucket
        assert filecmp.cmp(root / row.path, src, shallow=False)  # complete, byte for byte
        assert row.bytes == src.stat().st_size
        assert row.title == src.stem  # what yt-dlp's generic extractor names a direct link
    assert not list((root / "videos").rglob("*.part"))
    assert reference["summary"]["ok"] == len(sources)


def test_missing_url_recorded_as_404(reference):
    row = reference["df"].set_index("video_id").loc["missing"]
    assert row["status"] == "not_found"
    assert "404" in row["reason"]
    assert pd.isna(row["path"]) and pd.isna(row["width"])
    assert reference["summary"]["failed"] == {"not_found": 1}


def test_probed_values_equal_opencv(reference, videos_dir: Path):
    by_id = reference["df"].set_index("video_id")
    for src in samples(videos_dir):
        cap = cv2.VideoCapture(str(src))
        frames, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().strip().lower()
        expected = (
            frames,
            fps,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        cap.release()
        row = by_id.loc[src.stem]
        assert (row["n_frames"], row["fps"], row["width"], row["height"]) == expected
        assert row["codec"] == fourcc
        assert row["duration_s"] == pytest.approx(frames / fps)


def test_rerun_downloads_nothing(reference, server):
    before = sum(server.requests.values())
    mtimes = {p: p.stat().st_mtime_ns for p in fanned_files(reference["root"] / "videos")}
    summary = crawl(CrawlSettings(urls=str(reference["urls"]), workers=2), reference["root"])
    assert sum(server.requests.values()) == before  # not even a HEAD: done and 404 rows are final
    assert summary["this_run"] == {"attempted": 0, "fetched": 0, "ok": 0}
    assert mtimes and {p: p.stat().st_mtime_ns for p in fanned_files(reference["root"] / "videos")} == mtimes
    pd.testing.assert_frame_equal(pd.read_parquet(reference["root"] / "videos.parquet"), reference["df"])


def run_pipeline(urls: Path, root: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "pipeline.py", "crawl", "--urls", str(urls), "--root", str(root), *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def first_done(root: Path) -> bool:
    try:
        return pd.read_parquet(root / "videos.parquet")["status"].iloc[0] == "ok"
    except (OSError, ValueError, IndexError):  # not written yet
        return False


def test_killed_run_resumes_to_same_manifest(tmp_path, reference, server, videos_dir: Path):
    first, second = samples(videos_dir)[:2]
    root = tmp_path / "root"
    server.slow[f"/{second.name}"] = 0.1  # the second video takes seconds: the kill lands mid-download
    part = stored(root, second).with_name(second.name + ".part")
    proc = run_pipeline(reference["urls"], root, "--workers", "1")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if part.exists() and part.stat().st_size > 0 and first_done(root):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        server.slow.clear()
        if proc.poll() is None:
            proc.kill()
    killed = pd.read_parquet(root / "videos.parquet")  # readable and consistent after SIGKILL
    assert list(killed["status"]) == ["ok"] + ["pending"] * (len(killed) - 1)
    assert not stored(root, second).exists()  # the partial file is only ever *.part
    assert 0 < part.stat().st_size < second.stat().st_size
    assert filecmp.cmp(stored(root, first), first, shallow=False)

    first_gets = server.requests[f"/{first.name}"]
    resumed = run_pipeline(reference["urls"], root, "--workers", "1")
    out = resumed.communicate(timeout=120)[0]
    assert resumed.returncode == 0, out
    assert server.requests[f"/{first.name}"] == first_gets  # the finished video is not fetched again
    pd.testing.assert_frame_equal(pd.read_parquet(root / "videos.parquet"), reference["df"])
    assert not list((root / "videos").rglob("*.part"))


def test_killed_run_keeps_the_titles_of_finished_downloads(tmp_path, reference, server, videos_dir: Path):
    """SIGKILL after a download finished but before the manifest's next rewrite (at most every
    SAVE_EVERY_S): the title yt-dlp gave that video is not lost; the rerun ends as a lone run."""
    by_size = sorted(samples(videos_dir), key=lambda p: p.stat().st_size)
    first, second, slow = by_size[0], by_size[1], by_size[2]
    urls = write_urls(tmp_path / "urls.txt", [f"{server.base}/{p.name}" for p in (first, second, slow)])
    root = tmp_path / "root"
    server.slow[f"/{slow.name}"] = 0.2  # seconds per 64 KB: the run is still busy when the kill lands
    done = stored(root, second)
    try:
        status = kill_group_when(
            [
                sys.executable,
                "pipeline.py",
                "crawl",
                "--urls",
                str(urls),
                "--root",
                str(root),
                "--workers",
                "1",
            ],
            REPO,
            lambda _: done.exists(),
            timeout_s=60,
        )
    finally:
        server.slow.clear()
    assert status == -signal.SIGKILL and done.exists()
    killed = pd.read_parquet(root / "videos.parquet").set_index("video_id")
    assert killed.loc[second.stem, "status"] == "pending"  # the kill landed before the rewrite
    crawl(CrawlSettings(urls=str(urls), workers=1), root)
    df = pd.read_parquet(root / "videos.parquet")
    assert list(df["title"]) == [first.stem, second.stem, slow.stem]  # yt-dlp's title of a direct link
    expected = reference["df"].set_index("video_id").loc[list(df["video_id"])].reset_index()
    pd.testing.assert_frame_equal(df.drop(columns="url"), expected.drop(columns="url"))


def test_faults_are_recorded_and_the_run_goes_on(tmp_path, server, videos_dir: Path):
    gif = next(p for p in samples(videos_dir) if p.suffix == ".gif")
    server.busy.add("/busy.mp4")
    urls = [
        f"{server.base}/busy.mp4",
        f"http://127.0.0.1:{closed_port()}/offline.mp4",
        f"{server.base}/{gif.name}",
    ]
    cfg = CrawlSettings(
        urls=str(write_urls(tmp_path / "urls.txt", urls)), retries=2, backoff_s=0.01, workers=2
    )
    summary = crawl(cfg, tmp_path / "root")
    df = pd.read_parquet(tmp_path / "root" / "videos.parquet").set_index("video_id")
    assert df.loc["busy", "status"] == "rate_limited" and "429" in df.loc["busy", "reason"]
    assert server.requests["/busy.mp4"] == 3  # first try + 2 retries with back-off
    assert df.loc["offline", "status"] == "error" and df.loc["offline", "reason"].startswith("network:")
    assert df.loc[gif.stem, "status"] == "ok"
    assert summary["failed"] == {"error": 1, "rate_limited": 1}


def test_too_large_is_skipped_without_a_file(tmp_path, server, videos_dir: Path):
    small = min(samples(videos_dir), key=lambda p: p.stat().st_size)  # < 1 MB
    big = max(samples(videos_dir), key=lambda p: p.stat().st_size)  # > 1 MB
    urls = write_urls(
        tmp_path / "urls.txt", [f"{server.base}/{small.name}", f"{server.base}/{big.name}", str(big)]
    )
    crawl(CrawlSettings(urls=str(urls), max_filesize_mb=1, workers=1), tmp_path / "root")
    df = pd.read_parquet(tmp_path / "root" / "videos.parquet")
    assert list(df["status"]) == ["ok", "too_large", "too_large"]  # over HTTP, then as a local path
    assert all("max_filesize" in r for r in df["reason"][1:])
    assert [p.name for p in fanned_files(tmp_path / "root" / "videos")] == [small.name]


def test_local_paths_are_copied_and_probed_like_downloads(tmp_path, reference, videos_dir: Path):
    listed = [str(p) for p in samples(videos_dir)] + [str(tmp_path / "gone.mp4")]
    urls = write_urls(tmp_path / "urls.txt", listed)
    summary = crawl(CrawlSettings(urls=str(urls), workers=2), tmp_path / "root")
    df = pd.read_parquet(tmp_path / "root" / "videos.parquet").set_index("video_id")
    assert df.loc["gone", "status"] == "not_found"
    ref = reference["df"].set_index("video_id").drop(index="missing")
    probed = ["path", "n_frames", "fps", "width", "height", "duration_s", "codec", "bytes", "status"]
    pd.testing.assert_frame_equal(df.loc[ref.index, probed], ref[probed])
    for src in samples(videos_dir):
        assert filecmp.cmp(stored(tmp_path / "root", src), src, shallow=False)
    assert summary["this_run"]["fetched"] == len(ref)

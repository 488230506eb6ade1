"""crawl --from-vnames end to end: an official-format list of the sample footage, served on loopback.

The URL template points at an HTTP server on 127.0.0.1 that serves ../shared/data/videos as
``/<id>.mp4``; the videos go through yt-dlp's real download path.
"""

from __future__ import annotations

import filecmp
import functools
import http.server
import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from bench.scale_parts.loopback import CountingFiles
from collect.crawl import crawl
from collect.settings import CrawlSettings
from common.fanout import bucket, fanned_files

REPO = Path(__file__).resolve().parent.parent
LISTED = {  # vname line -> the sample it names (None: not on the server)
    "usa+newyork+one-by-one-person-detection": "one-by-one-person-detection.mp4",
    "usa+newyork+street-crossing": "street-crossing.mp4",
    "uk+london+doesnotexist": None,
}
VNAMES = "\n".join([*LISTED, "usa+newyork", "usa+boston+street-crossing"]) + "\n"


@pytest.fixture(scope="module")
def server(videos_dir: Path):
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(CountingFiles, directory=videos_dir)
    )
    srv.daemon_threads = True
    srv.requests = Counter()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.template = f"http://127.0.0.1:{srv.server_address[1]}/{{id}}.mp4"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, server):
    """``python pipeline.py crawl --from-vnames`` once, as a user runs it."""
    base = tmp_path_factory.mktemp("vnames")
    (base / "vnames.txt").write_text(VNAMES)
    root = base / "root"
    cmd = [
        sys.executable, "pipeline.py", "crawl", "--from-vnames", str(base / "vnames.txt"),
        "--vnames-url-template", server.template, "--root", str(root), "--workers", "2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {"base": base, "root": root, "stdout": proc.stdout, "df": pd.read_parquet(root / "videos.parquet")}


def test_manifest_keeps_country_city_and_line(first_run):
    df = first_run["df"]
    assert list(df["vname"]) == list(LISTED)  # file order, the malformed and repeated lines left out
    for row in df.itertuples():
        country, city, video_id = row.vname.split("+")  # how the release's scripts read the line
        assert (row.country, row.city, row.video_id) == (country, city, video_id)
    assert list(df["status"]) == ["ok", "ok", "not_found"]


def test_files_equal_the_sources(first_run, videos_dir: Path):
    ok = first_run["df"][first_run["df"]["status"] == "ok"]
    for row in ok.itertuples():
        source = videos_dir / LISTED[row.vname]
        assert row.path == f"videos/{bucket(row.video_id)}/{row.video_id}.mp4"
        assert filecmp.cmp(first_run["root"] / row.path, source, shallow=False)
        assert row.bytes == source.stat().st_size
    assert sorted(p.name for p in fanned_files(first_run["root"] / "videos")) == sorted(
        f for f in LISTED.values() if f
    )


def test_missing_video_and_bad_lines_are_reported(first_run):
    missing = first_run["df"].set_index("vname").loc["uk+london+doesnotexist"]
    assert missing["status"] == "not_found" and "404" in missing["reason"] and pd.isna(missing["path"])
    report = json.loads((first_run["root"] / "vnames_report.json").read_text())
    assert {k: report[k] for k in ("lines", "listed", "malformed", "duplicates", "downloaded")} == {
        "lines": 5,
        "listed": 3,
        "malformed": 1,
        "duplicates": 1,
        "downloaded": 2,
    }
    assert report["unavailable"] == {"not_found": 1} and report["to_retry"] == 0
    assert [v["vname"] for v in report["not_downloaded"]] == ["uk+london+doesnotexist"]
    assert [(m["line"], m["text"]) for m in report["malformed_lines"]] == [(4, "usa+newyork")]
    assert [(d["line"], d["first_line"]) for d in report["duplicate_lines"]] == [(5, 2)]
    table = {tuple(line.split()[-2:]) for line in first_run["stdout"].splitlines()}  # pipeline's summary
    assert {("vnames.downloaded", "2"), ("vnames.unavailable.not_found", "1")} <= table


def test_rerun_downloads_nothing(first_run, server):
    root = first_run["root"]
    before = sum(server.requests.values())
    mtimes = {p: p.stat().st_mtime_ns for p in fanned_files(root / "videos")}
    cfg = CrawlSettings(
        from_vnames=str(first_run["base"] / "vnames.txt"), vnames_url_template=server.template
    )
    summary = crawl(cfg, root)
    assert sum(server.requests.values()) == before  # no request at all: ok and not_found are final
    assert summary["this_run"] == {"attempted": 0, "fetched": 0, "ok": 0}
    assert summary["vnames"]["downloaded"] == 2
    assert mtimes and {p: p.stat().st_mtime_ns for p in fanned_files(root / "videos")} == mtimes
    pd.testing.assert_frame_equal(pd.read_parquet(root / "videos.parquet"), first_run["df"])


def test_only_the_listed_videos_are_fetched(tmp_path, server, videos_dir: Path):
    """A pending row of another source in the same workspace is left alone by --from-vnames."""
    root = tmp_path / "root"
    urls = tmp_path / "urls.txt"
    urls.write_text(server.template.format(id="pedestrians") + "\n")
    crawl(CrawlSettings(urls=str(urls), search_only=True), root)
    vnames = tmp_path / "vnames.txt"
    vnames.write_text("usa+newyork+street-crossing\n")
    before = server.requests.copy()
    summary = crawl(CrawlSettings(from_vnames=str(vnames), vnames_url_template=server.template), root)
    df = pd.read_parquet(root / "videos.parquet").set_index("video_id")
    assert df.loc["pedestrians", "status"] == "pending" and pd.isna(df.loc["pedestrians", "vname"])
    assert df.loc["street-crossing", "status"] == "ok"
    assert server.requests["/pedestrians.mp4"] == before["/pedestrians.mp4"] == 0
    assert summary["this_run"] == {"attempted": 1, "fetched": 1, "ok": 1}
    assert filecmp.cmp(root / df.loc["street-crossing", "path"], videos_dir / "street-crossing.mp4", False)

"""``stream --from-dets``: the release's boxes cut from each video as it arrives, against the staged
``crawl --from-vnames`` then ``build-shards --from-dets``, on the sample footage served on 127.0.0.1
(``regenerate_chain``: a video missing from the server, a line missing from vnames.txt, a box
beyond its frame, a video found at another size). Calibration is on (HOG), as a user runs it."""

from __future__ import annotations

import functools
import http.server
import json
import pickle
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from processes import kill_group_when
from regenerate_chain import DETS, REPO, SOURCES, run

from bench.scale_parts.loopback import QuietFiles
from common.fanout import fanned_files


@pytest.fixture(scope="module")
def release(tmp_path_factory, videos_dir: Path):
    base = tmp_path_factory.mktemp("release")
    (base / "vnames.txt").write_text("\n".join(SOURCES) + "\n")
    (base / "dets").mkdir()
    for vname, dets in DETS.items():
        with open(base / "dets" / f"{vname}.pkl", "wb") as f:
            pickle.dump(dets, f)
    (base / "config.yaml").write_text("shards: {max_samples: 3, workers: 2}\n")
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietFiles, directory=videos_dir)
    )
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    template = f"http://127.0.0.1:{srv.server_address[1]}/{{id}}.mp4"
    yield {"base": base, "template": template}
    srv.shutdown()
    srv.server_close()


def crawl(release, root: Path, *flags: str) -> None:
    vnames = str(release["base"] / "vnames.txt")
    run(
        "crawl",
        "--from-vnames",
        vnames,
        "--vnames-url-template",
        release["template"],
        "--root",
        str(root),
        *flags,
    )


def stream_command(release, root: Path) -> list[str]:
    config, dets = str(release["base"] / "config.yaml"), str(release["base"] / "dets")
    return [
        "stream",
        "--from-dets",
        dets,
        "--root",
        str(root),
        "--config",
        config,
        "--max-videos-on-disk",
        "2",
    ]


@pytest.fixture(scope="module")
def staged(release, tmp_path_factory) -> Path:
    config, dets = str(release["base"] / "config.yaml"), str(release["base"] / "dets")
    root = tmp_path_factory.mktemp("staged")
    crawl(release, root)
    run("build-shards", "--from-dets", dets, "--root", str(root), "--config", config)
    return root


def test_stream_from_dets_equals_the_staged_regeneration(release, staged, tmp_path):
    streamed = tmp_path / "stream"
    crawl(release, streamed, "--search-only")
    run(*stream_command(release, streamed))
    assert_same(staged, streamed)


def test_killed_twice_then_rerun(release, staged, tmp_path):
    """kill -9 once the first video is recorded, then once the first shard is complete; the rerun
    ends with the staged regeneration."""
    streamed = tmp_path / "stream"
    crawl(release, streamed, "--search-only")
    records, parts = streamed / "stream_records", streamed / "shards" / "parts"
    command = [sys.executable, "pipeline.py", *stream_command(release, streamed)]
    for ready in (
        lambda: any(fanned_files(records)),
        lambda: parts.is_dir() and any(parts.glob("*.parquet")),
    ):
        assert kill_group_when(command, REPO, lambda proc, ready=ready: ready(), timeout_s=300) == -9
    run(*stream_command(release, streamed))
    assert_same(staged, streamed)


def assert_same(staged: Path, streamed: Path) -> None:
    tars = sorted(p.name for p in (staged / "shards").glob("lup-*.tar"))
    assert len(tars) >= 2 and tars == sorted(p.name for p in (streamed / "shards").glob("lup-*.tar"))
    for name in tars:
        assert (staged / "shards" / name).read_bytes() == (streamed / "shards" / name).read_bytes(), name
    for table in ("videos.parquet", "shards/samples.parquet", "shards/index.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(staged / table), pd.read_parquet(streamed / table))
    samples = pd.read_parquet(staged / "shards/samples.parquet")
    assert {"ok", "not_downloaded", "not_listed"} <= set(samples["status"])  # the chain's cases, both ways
    assert (samples["status"] == "ok").sum() >= 5
    reports = [
        json.loads((r / "dets_report.json").read_text().replace(str(r), "ROOT")) for r in (staged, streamed)
    ]
    assert reports[0] == reports[1]
    calibrated = [sorted(p.name for p in fanned_files(r / "calibration")) for r in (staged, streamed)]
    assert calibrated[0] and calibrated[0] == calibrated[1]  # every downloaded video checked, both ways
    assert not list(fanned_files(streamed / "videos"))  # every raw video deleted
    assert json.loads((staged / "stats.json").read_text()) == json.loads(
        (streamed / "stats.json").read_text()
    )

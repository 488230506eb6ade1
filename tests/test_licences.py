"""Licence and provenance (issue 26): a recorded yt-dlp information dict -> crawl's ``video_info/``
-> ``videos.parquet`` -> filter -> every crop's JSON -> ``samples.parquet`` and ``stats.json``;
``--license creative-commons`` keeps only what YouTube lists under Creative Commons.

The information is yt-dlp's own record of two YouTube videos (its extractor's test expectations:
a Creative Commons lecture and a standard-licence trailer), saved by crawl's real ``before_dl``
post-processor; the videos' files are in place as a finished download leaves them, so crawl reads
the record back without a request (``collect.download.download``)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import pipeline
from collect.download import video_path
from collect.search import CREATIVE_COMMONS, cache_path, search_url
from collect.video_info import info_path, info_saver
from common.manifests import boxes as box_file

VIDEO = "one-by-one-person-detection.mp4"
CC = "Creative Commons Attribution license (reuse allowed)"
# person boxes (HOG's, on this footage) of two sampled frames: frame, x1, y1, x2, y2, score
BOXES = [(100, 459.4, 68.6, 530.2, 209.5, 0.91), (100, 351.0, 65.0, 472.0, 306.0, 0.80), (400, 375.3, 46.2, 465.8, 227.1, 0.88)]  # fmt: skip


def recorded_info(license: str) -> dict:
    """yt-dlp's recorded information of a YouTube video with that licence (YoutubeIE._TESTS)."""
    from yt_dlp.extractor.youtube import YoutubeIE

    for test in YoutubeIE._TESTS:
        info = test.get("info_dict", {})
        if info.get("license") == license and info.get("upload_date"):
            return {k: v for k, v in info.items() if isinstance(v, str | int)}
    raise AssertionError(f"yt-dlp records no video with licence {license!r}")


def crawled_root(tmp_path: Path, videos_dir: Path, *flags: str) -> tuple[Path, dict, dict]:
    root = tmp_path / "root"
    infos = [recorded_info(CC), recorded_info("Standard YouTube License")]
    urls = []
    for info in infos:
        file = video_path(root / "videos", info["id"], "mp4")
        file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(videos_dir / VIDEO, file)
        info_saver(info_path(root / "videos", info["id"])).run(dict(info))  # what yt-dlp's hook writes
        urls.append(f"https://www.youtube.com/watch?v={info['id']}")
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    args = ["crawl", "--urls", str(tmp_path / "urls.txt"), "--root", str(root), *flags]
    assert pipeline.main(args) == 0
    return root, infos[0], infos[1]


def test_a_recorded_licence_reaches_the_crop_json_and_stats(tmp_path, videos_dir):
    root, cc, standard = crawled_root(tmp_path, videos_dir)
    videos = pd.read_parquet(root / "videos.parquet").set_index("video_id")
    assert videos.loc[cc["id"], ["license", "upload_date", "channel"]].tolist() == [
        CC, cc["upload_date"], cc["channel"],
    ]  # fmt: skip
    assert videos.loc[standard["id"], "license"] == "Standard YouTube License"
    assert (videos["status"] == "ok").all()

    assert pipeline.main(["filter", "--root", str(root), "--no-near-duplicate"]) == 0
    kept = pd.read_parquet(root / "video_filter.parquet").set_index("video_id")
    assert kept.loc[cc["id"], "license"] == CC
    for vid in (cc["id"], standard["id"]):  # detect's output, as detect writes it
        rows = [
            dict(video_id=vid, frame=f, box=i, x1=x1, y1=y1, x2=x2, y2=y2, score=s, keypoints=[0.0] * 51)
            | dict(valid=True, status="ok", detector="hog", keypoint_model="none", tracklet=None)
            for i, (f, x1, y1, x2, y2, s) in enumerate(BOXES)
        ]
        box_file.path_of(root, vid).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(box_file.path_of(root, vid), index=False)
    assert pipeline.main(["build-shards", "--root", str(root), "--workers", "1"]) == 0

    crops = {}
    for tar_path in sorted((root / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    crops[m.name] = json.loads(tar.extractfile(m).read())
    assert len(crops) == 2 * len(BOXES)
    for meta in crops.values():
        info = cc if meta["video_id"] == cc["id"] else standard
        assert meta["url"] == f"https://www.youtube.com/watch?v={info['id']}"
        assert meta["license"] == info["license"]
    samples = pq.read_table(root / "shards" / "samples.parquet").to_pandas()
    assert samples.groupby("license").size().to_dict() == {CC: 3, "Standard YouTube License": 3}
    assert json.loads((root / "stats.json").read_text())["licenses"] == {
        CC: 3, "Standard YouTube License": 3,
    }  # fmt: skip


def test_creative_commons_only_keeps_the_cc_video(tmp_path, videos_dir):
    root, cc, standard = crawled_root(tmp_path, videos_dir, "--license", "creative-commons")
    videos = pd.read_parquet(root / "videos.parquet").set_index("video_id")
    assert videos.loc[cc["id"], "status"] == "ok"
    assert videos.loc[standard["id"], "status"] == "not_licensed"
    assert "Standard YouTube License" in videos.loc[standard["id"], "reason"]
    assert pd.isna(videos.loc[standard["id"], "path"])  # out of every later stage


@pytest.mark.parametrize("license", ["any", "creative-commons"])
def test_the_search_asks_youtube_for_its_creative_commons_filter(license, tmp_path):
    """YouTube's filter protobuf: field 2 (filters) holding field 6 (Creative Commons) = 1."""
    import base64
    from urllib.parse import parse_qs, unquote, urlsplit

    url = search_url("Tokyo streetview", 730, license)
    if license == "any":
        assert url == "ytsearch730:Tokyo streetview"
        return
    query = parse_qs(urlsplit(url).query)
    assert query["search_query"] == ["Tokyo streetview"]
    assert base64.b64decode(unquote(query["sp"][0])) == bytes([0x12, 0x02, 0x30, 0x01])
    assert unquote(unquote(CREATIVE_COMMONS)) == "EgIwAQ=="
    assert cache_path(tmp_path, "Tokyo streetview", license) != cache_path(tmp_path, "Tokyo streetview")

"""crawl's small parts: list files, ids, failure classes, settings and the exact frame count."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest

from collect.cities import load_cities, load_urls
from collect.crawl import crawl
from collect.failures import classify_message, one_line
from collect.ids import sanitize_id, video_id_for
from collect.probe import ProbeError, probe_video
from collect.settings import CrawlSettings
from collect.ytdl import format_selector
from common.errors import SettingsError, UsageError

REPO = Path(__file__).resolve().parent.parent


def test_top100_lists_one_hundred_distinct_cities():
    cities = load_cities(str(REPO / "configs" / "top100.txt"))
    assert len(cities) == 100 and len({c.casefold() for c in cities}) == 100
    assert cities[:3] == ["New York", "Tokyo", "London"]  # the 2019 index's top three
    assert load_cities("top100.txt") == cities  # a bare name is looked up in configs/


def test_city_list_comments_blanks_and_duplicates(tmp_path, caplog):
    path = tmp_path / "cities.txt"
    path.write_text("# header\n\n  Tokyo  \nSão Paulo # trailing comment\n\nTOKYO\nLagos\n")
    with caplog.at_level(logging.WARNING):
        assert load_cities(str(path)) == ["Tokyo", "São Paulo", "Lagos"]
    assert [r.message for r in caplog.records if "duplicate" in r.message] == [
        f"{path}:6: duplicate of line 3 (TOKYO), ignored"
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   \n"])
def test_empty_city_list_is_rejected(tmp_path, text):
    path = tmp_path / "cities.txt"
    path.write_text(text)
    with pytest.raises(UsageError, match="lists nothing"):
        load_cities(str(path))


def test_url_list_resolves_local_paths_against_its_folder(tmp_path):
    (tmp_path / "clips").mkdir()
    path = tmp_path / "urls.txt"
    path.write_text("clips/a.mp4\nhttps://example.com/v.mp4#t=3\n/abs/d.gif\nHTTPS://Example.COM/v.mp4#t=3\n")
    assert load_urls(str(path)) == [  # the last line repeats the second: scheme and host ignore case
        str(tmp_path / "clips" / "a.mp4"),
        "https://example.com/v.mp4#t=3",
        "/abs/d.gif",
    ]


def test_missing_list_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_cities(str(tmp_path / "nope.txt"))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PL1234", "dQw4w9WgXcQ"),
        ("https://youtu.be/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("http://127.0.0.1:8000/clips/street%20walk.v2.mp4", "street_walk_v2"),
        ("/data/videos/people-detection.gif", "people-detection"),
        ("/data/videos/..mp4", None),
    ],
)
def test_video_ids_are_sanitized_without_network(item, expected):
    vid = video_id_for(item)
    assert "." not in vid and sanitize_id(vid) == vid
    if expected is None:
        assert vid.startswith("video_") and vid == video_id_for(item)  # stable fallback
    else:
        assert vid == expected


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access", "private"),
        ("ERROR: [youtube] abc: Sign in to confirm you’re not a bot. Use --cookies", "rate_limited"),
        (
            "ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader",
            "unavailable",
        ),
        ("ERROR: [youtube] abc: Join this channel to get access to members-only content", "unavailable"),
        ("ERROR: unable to download video data: HTTP Error 429: Too Many Requests", "rate_limited"),
        ("ERROR: [generic] x: Unable to download webpage: HTTP Error 404: Not Found", "not_found"),
        ("ERROR: [youtube] abc: Requested format is not available", "error"),
        ("[download] File is larger than max-filesize (5 bytes > 1 bytes). Aborting.", "too_large"),
    ],
)
def test_yt_dlp_messages_map_to_statuses(message, status):
    assert classify_message(message) == status


def test_reasons_are_one_short_line():
    text = "ERROR: \x1b[0;31mboom\x1b[0m\nsecond line (caused by <HTTPError 404: Not Found>)"
    assert one_line(text) == "boom second line"
    assert len(one_line("x" * 1000)) == 300


def test_format_prefers_h264_mp4_up_to_max_height():
    assert format_selector(720).split("/")[0] == "bv*[ext=mp4][height<=?720][vcodec^=avc1]"
    assert all("[height<=?480]" in alt for alt in format_selector(480).split("/"))
    assert "+" not in format_selector(720)  # no merge: ffmpeg is never needed


def test_exact_frame_count_matches_decoding(videos_dir: Path):
    path = videos_dir / "concourse-walkers.mp4"  # its container claims one frame more than it holds
    cap = cv2.VideoCapture(str(path))
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert probe_video(path, count_frames=True)["n_frames"] == decoded
    assert probe_video(path)["n_frames"] == claimed


def test_probe_rejects_a_file_that_is_not_a_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(ProbeError):
        probe_video(bad)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"queries": ("streetview",)}, "{city}"),
        ({"workers": 0}, "workers"),
        ({"backoff_s": -1.0}, "backoff_s"),
    ],
)
def test_bad_settings_are_rejected(fields, match):
    with pytest.raises(SettingsError, match=match):
        CrawlSettings(**fields)


def test_cities_and_urls_are_exclusive(tmp_path):
    with pytest.raises(UsageError, match="exactly one"):
        crawl(CrawlSettings(), tmp_path)
    with pytest.raises(UsageError, match="exactly one"):
        crawl(CrawlSettings(cities="a.txt", urls="b.txt"), tmp_path)
    with pytest.raises(UsageError, match="cookies"):
        crawl(CrawlSettings(urls="b.txt", cookies=str(tmp_path / "missing.txt")), tmp_path)

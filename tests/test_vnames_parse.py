"""The official vnames.txt format: parsing (one parser for crawl and build-shards), malformed lines,
duplicates, settings, the default URL."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from collect.crawl import crawl
from collect.ids import video_id_for
from collect.settings import CrawlSettings
from collect.vnames import load_vnames, parse_vname, parse_vnames
from common.errors import SettingsError, UsageError
from shards.release import import_dets
from shards.release.dets_input import VideoDets


@pytest.mark.parametrize(
    ("line", "parts"),
    [
        ("usa+newyork+dQw4w9WgXcQ", ("usa", "newyork", "dQw4w9WgXcQ")),
        ("china+beijing+-a_B-9_zZ0x", ("china", "beijing", "-a_B-9_zZ0x")),  # ids may start with '-'
        ("usa+new york+one-by-one-person-detection", ("usa", "new york", "one-by-one-person-detection")),
        ("côte d'ivoire+abidjan+x_1", ("côte d'ivoire", "abidjan", "x_1")),
    ],
)
def test_well_formed_lines_split_into_country_city_id(line, parts):
    assert parse_vname(line) == parts
    assert "+".join(parts) == line  # the line (the release's file and pickle stem) is recoverable


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("usa+newyork", "got 2 '+'-separated parts"),
        ("usa+newyork+abc+def", "got 4 '+'-separated parts"),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "got 1 '+'-separated parts"),
        ("+newyork+abc", "empty country"),
        ("usa++abc", "empty city"),
        ("usa+newyork+", "empty video id"),
        ("usa+newyork+abc.mp4", "characters outside"),
        ("usa+newyork+a b", "characters outside"),
        ("usa+new/york+abc", "cannot be a folder name"),
        ("usa+..+abc", "cannot be a folder name"),
        ("usa +newyork+abc", "spaces around"),
        ("usa+newyork+" + "a" * 81, "longer than 80"),
    ],
)
def test_malformed_lines_have_a_reason(line, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_vname(line)


def test_list_records_malformed_and_duplicate_lines():
    text = (
        "\ufeffusa+newyork+abc\r\n"  # a BOM and Windows line ends, as an editor may save it
        "\n"
        "# a comment\n"
        "usa+newyork\n"
        "usa+newyork+abc\n"  # the same line again
        "uk+london+abc\n"  # the same id in another city: the first line wins
        "uk+london+ABC\n"  # YouTube ids are case-sensitive: another video
        "  fr+paris+x-y_z  \n"
    )
    listing = parse_vnames(text)
    assert listing.lines == 6
    assert [(e.line, e.vname, e.country, e.city, e.video_id) for e in listing.entries] == [
        (1, "usa+newyork+abc", "usa", "newyork", "abc"),
        (7, "uk+london+ABC", "uk", "london", "ABC"),
        (8, "fr+paris+x-y_z", "fr", "paris", "x-y_z"),
    ]
    assert [(m["line"], m["text"]) for m in listing.malformed] == [(4, "usa+newyork")]
    assert [(d["line"], d["first_line"], d["reason"]) for d in listing.duplicates] == [
        (5, 1, "repeats line 1"),
        (6, 1, "video id already listed on line 1 as usa+newyork+abc"),
    ]


@pytest.mark.parametrize("text", ["", "\n  \n", "# only a comment\n", "usa+newyork\nnot a vname\n"])
def test_list_without_a_usable_line_is_a_usage_error(tmp_path, text):
    path = tmp_path / "vnames.txt"
    path.write_text(text)
    with pytest.raises(UsageError, match="lists no country\\+city\\+youtube_id line"):
        load_vnames(str(path))


def test_missing_list_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        crawl(CrawlSettings(from_vnames=str(tmp_path / "vnames.txt")), tmp_path / "root")


def test_sources_are_exclusive(tmp_path):
    with pytest.raises(UsageError, match="exactly one"):
        crawl(CrawlSettings(from_vnames="v.txt", urls="u.txt"), tmp_path)
    with pytest.raises(UsageError, match="exactly one"):
        crawl(CrawlSettings(from_vnames="v.txt", cities="c.txt"), tmp_path)


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("https://example.com/video", "must contain \\{id\\}"),
        ("https://example.com/{video}", "only \\{id\\}"),
        ("https://example.com/{id", "only \\{id\\}"),
    ],
)
def test_bad_url_template_is_rejected(template, match):
    with pytest.raises(SettingsError, match=match):
        CrawlSettings(vnames_url_template=template)


def test_default_url_is_the_youtube_watch_page(tmp_path):
    """No network: --search-only writes the pending rows of the list and downloads nothing."""
    path = tmp_path / "vnames.txt"
    path.write_text("usa+newyork+dQw4w9WgXcQ\njapan+tokyo+a-B_c9d8e7f\n")
    summary = crawl(CrawlSettings(from_vnames=str(path), search_only=True), tmp_path / "root")
    df = pd.read_parquet(tmp_path / "root" / "videos.parquet")
    assert list(df["url"]) == [
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
        "https://www.youtube.com/watch?v=a-B_c9d8e7f",
    ]
    assert list(df["video_id"]) == [video_id_for(u) for u in df["url"]]  # the search path's ids too
    assert list(df["country"]) == ["usa", "japan"] and list(df["city"]) == ["newyork", "tokyo"]
    assert list(df["status"]) == ["pending", "pending"]
    assert summary["vnames"]["to_retry"] == {"pending": 2} and summary["this_run"]["attempted"] == 0
    assert not (tmp_path / "root" / "videos").exists()


@pytest.mark.parametrize(
    ("line", "verdict"),
    [
        ("usa+newyork+dQw4w9WgXcQ", ("usa", "newyork", "dQw4w9WgXcQ")),
        ("china+beijing+-a_B-9_zZ0x", ("china", "beijing", "-a_B-9_zZ0x")),
        # build-shards' old parser accepted these, crawl's refused them: --from-dets said not_listed
        ("usa+new/york+abc", "cannot be a folder name"),
        ("usa+..+abc", "cannot be a folder name"),
        ("usa +newyork+abc", "spaces around"),
        ("usa+newyork+" + "a" * 81, "longer than 80"),
    ],
)
def test_crawl_and_build_shards_read_a_vname_alike(tmp_path, line, verdict):
    """One parser (common.release.vnames) for both users: crawl lists exactly the lines whose
    released detections build-shards --from-dets will look up, and refuses the others for the same
    reason that build-shards reports as ``bad_vname``."""
    listing = parse_vnames(line)
    video = VideoDets(line, "dets.pkl", {1: []})
    context, _items = import_dets.video_plan(video, {}, tmp_path, None, import_dets.owners([video], {}))
    if isinstance(verdict, tuple):
        assert [(e.country, e.city, e.video_id) for e in listing.entries] == [verdict]
        assert (context["country"], context["city"], context["video_id"]) == verdict
        assert context["status"] == "not_listed"  # parsed; simply absent from the empty videos.parquet
    else:
        assert not listing.entries and verdict in listing.malformed[0]["reason"]
        assert context["status"] == "bad_vname" and verdict in context["reason"]

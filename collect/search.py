"""Search YouTube for each city (§3.1: "cityname + streetview (or scene)"), ~730 videos per city.

Each query is a flat ``ytsearchN:`` extraction through the yt-dlp API; its entries are cached
under ``root/search/`` so a rerun after a kill does not search again. Results of a city's
queries are interleaved (first of each query, then second of each, ...) and de-duplicated by
video id across queries and cities until the city has ``per_city`` videos.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from collect.failures import classify, http_status, is_network_error, one_line
from collect.ids import sanitize_id
from collect.settings import CrawlSettings
from collect.ytdl import KeepLogger, common_options, search_options
from common.atomic import write_json
from common.errors import UsageError
from common.manifests.videos import new_row

log = logging.getLogger(__name__)
YOUTUBE = "https://www.youtube.com/"
ENTRY_FIELDS = ("id", "url", "title", "channel", "uploader", "duration", "live_status", "ie_key")
NOT_DOWNLOADABLE = {"is_live", "is_upcoming"}


CREATIVE_COMMONS = (
    "EgIwAQ%253D%253D"  # YouTube's search filter "Creative Commons" (sp=; field 6 of the filters)
)


def search_url(query: str, n: int, license: str) -> str:
    """What yt-dlp extracts for a search: ``ytsearch<n>:<query>``, or with ``creative-commons`` the
    results page with YouTube's own Creative Commons filter (yt-dlp's youtube:search_url)."""
    if license == "creative-commons":
        from urllib.parse import quote_plus

        return f"{YOUTUBE}results?search_query={quote_plus(query)}&sp={CREATIVE_COMMONS}"
    return f"ytsearch{n}:{query}"


def cache_path(root: Path, query: str, license: str = "any") -> Path:
    slug = sanitize_id(query)[:60]
    key = query if license == "any" else f"{query}\0{license}"  # filtered results are others
    return root / "search" / f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.json"


def check_youtube_reachable(cfg: CrawlSettings) -> None:
    """One request to youtube.com, no retries: raise a one-line ``UsageError`` if it fails."""
    import yt_dlp
    from yt_dlp.networking import Request

    opts = {**common_options(cfg, KeepLogger()), "extractor_retries": 0}
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.urlopen(Request(YOUTUBE + "robots.txt")).read(1)
    except Exception as e:  # every failure here means "cannot search"; say why in one line
        if http_status(e) == 429:
            raise UsageError(
                "YouTube answered 429 Too Many Requests: wait before searching again, or pass --cookies"
            ) from None
        raise UsageError(f"cannot reach YouTube ({YOUTUBE}): {one_line(str(e), 200)}") from None


def run_query(cfg: CrawlSettings, query: str, n: int) -> list[dict[str, Any]]:
    """The flat entries of ``ytsearch<n>:<query>`` (each a dict of ``ENTRY_FIELDS``)."""
    import yt_dlp

    logger = KeepLogger(prefix=f"search {query!r}: ")
    with yt_dlp.YoutubeDL({**search_options(cfg, logger), "playlistend": n}) as ydl:
        result = ydl.extract_info(search_url(query, n, cfg.license), download=False)
    entries = (result or {}).get("entries") or []
    return [{k: e.get(k) for k in ENTRY_FIELDS} for e in entries if isinstance(e, dict) and e.get("id")]


def cached_query(cfg: CrawlSettings, root: Path, query: str, n: int, reach: list[bool]) -> list[dict]:
    """``run_query`` through the cache; checks that YouTube is reachable before the first real search."""
    import json

    path = cache_path(root, query, cfg.license)
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("n", 0) >= n or len(cached["entries"]) < cached.get("n", 0):
            return cached["entries"][:n]
    if not reach:
        check_youtube_reachable(cfg)
        reach.append(True)
    try:
        entries = run_query(cfg, query, n)
    except Exception as e:  # classify: network and 429 stop the run, anything else skips this query
        status, reason = classify(e)
        if is_network_error(e):
            raise UsageError(f"cannot reach YouTube while searching {query!r}: {reason}") from None
        if status == "rate_limited":
            raise UsageError(
                f"YouTube rate-limited the search {query!r}: {reason}; wait, or pass --cookies"
            ) from None
        raise
    write_json(path, {"query": query, "n": n, "entries": entries})
    return entries


def city_results(
    cfg: CrawlSettings, root: Path, city: str, reach: list[bool], failed_queries: list[str]
) -> list[tuple[str, list[dict]]]:
    """``(query, entries)`` of each of a city's queries; a failed query is logged, noted and skipped."""
    per_query: list[tuple[str, list[dict]]] = []
    for template in cfg.queries:
        query = template.format(city=city)
        try:
            per_query.append((query, cached_query(cfg, root, query, cfg.per_city, reach)))
        except UsageError:
            raise
        except Exception as e:  # one broken query is recorded, the crawl goes on
            failed_queries.append(query)
            log.warning("search %r failed: %s", query, one_line(str(e)))
    return per_query


def candidate_row(vid: str, entry: dict[str, Any], city: str, query: str) -> dict[str, Any]:
    """A new pending manifest row for a search entry."""
    return new_row(
        vid,
        entry.get("url") or f"{YOUTUBE}watch?v={entry['id']}",
        city=city,
        query=query,
        title=entry.get("title"),
        channel=entry.get("channel") or entry.get("uploader"),
        duration_s=float(entry["duration"]) if entry.get("duration") is not None else None,
    )


def pick_for_city(
    cfg: CrawlSettings,
    city: str,
    per_query: list[tuple[str, list[dict]]],
    listed: dict[str, str | None],
    seen: set[str],
    counts: Counter,
    rows: list[dict[str, Any]],
) -> int:
    """Take a city's interleaved results until ``per_city``; new rows go to ``rows``; the number found."""
    found = 0
    interleaved = itertools.zip_longest(*[[(q, e) for e in entries] for q, entries in per_query])
    for query, entry in (pair for tier in interleaved for pair in tier if pair is not None):
        if found >= cfg.per_city:
            break
        counts["results"] += 1
        if entry.get("live_status") in NOT_DOWNLOADABLE:
            counts["live_skipped"] += 1
            continue
        vid = sanitize_id(str(entry["id"]))
        if vid in seen or (vid in listed and listed[vid] != city):
            counts["duplicates"] += 1
            continue
        seen.add(vid)
        found += 1
        if vid not in listed:
            rows.append(candidate_row(vid, entry, city, query))
    return found


def search_candidates(
    cfg: CrawlSettings, cities: list[str], root: Path, listed: dict[str, str | None]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """New pending manifest rows for every city.

    ``listed`` maps the ids already in the manifest to their city: on a rerun they count towards
    their city's target again instead of appearing twice.
    """
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    counts: Counter = Counter()
    failed_queries: list[str] = []
    reach: list[bool] = []
    seen: set[str] = set()
    short: dict[str, int] = {}
    for city in tqdm(cities, desc="search", unit="city", disable=None):
        per_query = city_results(cfg, root, city, reach, failed_queries)
        found = pick_for_city(cfg, city, per_query, listed, seen, counts, rows)
        if found < cfg.per_city:
            short[city] = found
    stats = {
        "queries": len(cities) * len(cfg.queries),
        "results": counts["results"],
        "duplicates_dropped": counts["duplicates"],
        "live_skipped": counts["live_skipped"],
        "new_candidates": len(rows),
        "failed_queries": len(failed_queries),
        "cities_below_target": len(short),
    }
    return rows, stats

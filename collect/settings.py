"""Settings of the crawl stage; defaults are the paper's §3.1 values."""

from __future__ import annotations

from dataclasses import dataclass

from common.settings import check_nonnegative, check_positive, setting


@dataclass(frozen=True)
class CrawlSettings:
    cities: str | None = setting(None, "city list, one per line (e.g. configs/top100.txt)")
    urls: str | None = setting(None, "file of video URLs or local paths, instead of searching")
    queries: tuple[str, ...] = setting(
        ("{city} streetview", "{city} street scene", "{city} walking tour"),
        "search query templates; {city} is replaced by each city",
    )
    per_city: int = setting(730, "videos to keep per city (the paper: ~730)")
    max_height: int = setting(720, "download mp4 up to this height (official script: 720p)")
    max_filesize_mb: int = setting(2048, "skip videos larger than this (MB)")
    workers: int = setting(4, "parallel downloads")
    retries: int = setting(5, "retries per video, with exponential back-off")
    rate_limit: str | None = setting(None, "download rate limit, e.g. 5M (bytes/s)")
    cookies: str | None = setting(None, "cookies.txt for YouTube's bot checks")
    search_only: bool = setting(False, "write videos.parquet but download nothing")

    def __post_init__(self) -> None:
        check_positive(self, "per_city", "max_height", "max_filesize_mb", "workers")
        check_nonnegative(self, "retries")

"""Settings of the crawl stage; defaults are the paper's §3.1 values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from common.errors import SettingsError
from common.settings import EngineSettings, check_nonnegative, check_positive, setting

RATE_PATTERN = re.compile(r"^\d+(\.\d+)?[KMG]?$", re.IGNORECASE)
URL_FIELDS = ("id", "country", "city", "vname")


def check_url_template(template: str) -> None:
    """``vnames_url_template`` must name the video (``{id}`` or ``{vname}``) and use no other field."""
    try:
        template.format(**{f: "x" for f in URL_FIELDS})
    except (KeyError, IndexError, ValueError) as e:
        raise SettingsError(
            f"vnames_url_template may use only {{id}}, {{country}}, {{city}}, {{vname}}: {template!r} ({e})"
        ) from None
    if "{id}" not in template and "{vname}" not in template:
        raise SettingsError(f"vnames_url_template must contain {{id}} (or {{vname}}), got {template!r}")


@dataclass(frozen=True)
class CrawlSettings(EngineSettings):
    cities: str | None = setting(None, "city list, one per line (e.g. configs/top100.txt)")
    urls: str | None = setting(None, "file of video URLs or local paths, instead of searching")
    from_vnames: str | None = setting(
        None, "the official LUPerson vnames.txt (country+city+youtube_id a line): download exactly those"
    )
    vnames_url_template: str = setting(
        "https://www.youtube.com/watch?v={id}",
        "URL of a --from-vnames video; fields {id}, {country}, {city}, {vname} (tests: a local server)",
    )
    queries: tuple[str, ...] = setting(
        ("{city} streetview", "{city} street scene", "{city} walking tour"),
        "search query templates; {city} is replaced by each city",
    )
    per_city: int = setting(730, "videos to keep per city (the paper: ~730)")
    max_height: int = setting(720, "download mp4 up to this height (official script: 720p)")
    max_filesize_mb: int = setting(2048, "skip videos larger than this (MB)")
    workers: int = setting(4, "parallel downloads")
    retries: int = setting(5, "retries per video, with exponential back-off")
    backoff_s: float = setting(5.0, "first back-off pause in seconds; doubles on every retry (capped at 300)")
    rate_limit: str | None = setting(None, "download rate limit, e.g. 5M (bytes/s)")
    cookies: str | None = setting(None, "cookies.txt for YouTube's bot checks")
    proxy: str | None = setting(None, "proxy URL for every yt-dlp request, e.g. socks5://127.0.0.1:1080")
    socket_timeout: float = setting(20.0, "seconds before a silent connection counts as failed")
    sleep_s: float = setting(0.0, "pause before each download and between search pages (eases 429s)")
    js_runtime: Literal["deno", "node", "bun", "quickjs"] = setting(
        "deno", "JavaScript runtime yt-dlp runs for YouTube's challenges (needs it on PATH)"
    )
    count_frames: bool = setting(
        False,
        "count the frames a read-every-frame loop returns (exact: from the packet index, or by decoding "
        "every frame when it cannot be planned) instead of the container's count",
    )
    search_only: bool = setting(False, "write videos.parquet but download nothing")
    license: Literal["any", "creative-commons"] = setting(
        "any",
        "creative-commons: search with YouTube's Creative Commons filter and keep only videos whose "
        "recorded licence is Creative Commons (the others: status not_licensed, never downloaded)",
    )
    download_archive: bool = setting(
        True,
        "record finished downloads in download_archive.txt and never fetch them again (the streaming "
        "build turns it off: it deletes each video once cut, and fetches one again when its crops were lost)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "per_city", "max_height", "max_filesize_mb", "workers", "socket_timeout")
        check_nonnegative(self, "retries", "backoff_s", "sleep_s")
        if not self.queries or any("{city}" not in q for q in self.queries):
            raise SettingsError("queries: every template must contain {city}")
        check_url_template(self.vnames_url_template)
        if self.rate_limit is not None and not RATE_PATTERN.match(self.rate_limit):
            raise SettingsError(
                f"rate_limit must look like 500K, 5M or 1.5M (bytes/s), got {self.rate_limit!r}"
            )

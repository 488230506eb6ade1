"""yt-dlp adapter: option dicts for searching and downloading, and a logger that keeps messages.

Only the yt-dlp Python API is used (``yt_dlp.YoutubeDL(opts)``); no shell, no command strings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collect.failures import one_line
from collect.settings import CrawlSettings

log = logging.getLogger("collect.yt_dlp")
MAX_BACKOFF_S = 300.0


class KeepLogger:
    """yt-dlp ``logger``: routes messages to ``logging`` (debug) and keeps them for classification."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.messages: list[str] = []

    def _keep(self, level: int, msg: str) -> None:
        self.messages.append(msg)
        log.log(level, "%s%s", self.prefix, one_line(msg, 500))

    def debug(self, msg: str) -> None:
        self._keep(logging.DEBUG, msg)

    def info(self, msg: str) -> None:
        self._keep(logging.DEBUG, msg)

    def warning(self, msg: str) -> None:
        self._keep(logging.DEBUG, msg)

    def error(self, msg: str) -> None:
        self._keep(logging.DEBUG, msg)

    def saw(self, text: str) -> bool:
        """True when any kept message contains ``text`` (case-insensitive)."""
        text = text.lower()
        return any(text in m.lower() for m in self.messages)


def backoff(cfg: CrawlSettings) -> Callable[[int], float]:
    """Exponential back-off: ``backoff_s * 2**n`` seconds before retry ``n`` (capped)."""
    return lambda n: min(cfg.backoff_s * 2**n, MAX_BACKOFF_S)


def common_options(cfg: CrawlSettings, logger: KeepLogger) -> dict[str, Any]:
    """Options shared by search and download."""
    opts: dict[str, Any] = {
        "logger": logger,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "color": {"stdout": "never", "stderr": "never"},
        "socket_timeout": cfg.socket_timeout,
        "extractor_retries": cfg.retries,
        "retry_sleep_functions": {"http": backoff(cfg), "fragment": backoff(cfg), "extractor": backoff(cfg)},
        "js_runtimes": {cfg.js_runtime: {}},
    }
    if cfg.sleep_s:
        opts["sleep_interval_requests"] = cfg.sleep_s
    if cfg.cookies:
        opts["cookiefile"] = cfg.cookies
    if cfg.proxy:
        opts["proxy"] = cfg.proxy
    return opts


def search_options(cfg: CrawlSettings, logger: KeepLogger) -> dict[str, Any]:
    """Flat extraction: a search returns ids, titles, durations and channels, no video pages."""
    return {**common_options(cfg, logger), "extract_flat": "in_playlist", "skip_download": True}


def format_selector(max_height: int) -> str:
    """mp4 up to ``max_height`` as the official script (H.264 first: OpenCV decodes it everywhere).

    No ``+`` merges, so ffmpeg is never needed; a non-mp4 file is the last resort.
    """
    h = f"[height<=?{max_height}]"
    return f"bv*[ext=mp4]{h}[vcodec^=avc1]/bv*[ext=mp4]{h}/b[ext=mp4]{h}/b{h}"


def download_options(
    cfg: CrawlSettings,
    logger: KeepLogger,
    outtmpl: Path,
    archive: Path,
    hooks: list[Callable[[dict], None]],
    match_filter: Callable[[dict, bool], str | None],
) -> dict[str, Any]:
    """Options for one video written to ``outtmpl`` (``<videos>/<id>.%(ext)s``)."""
    from yt_dlp.utils import parse_bytes

    opts = {
        **common_options(cfg, logger),
        "format": format_selector(cfg.max_height),
        "outtmpl": {"default": str(outtmpl)},
        "max_filesize": cfg.max_filesize_mb * 1024 * 1024,
        "match_filter": match_filter,
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "download_archive": str(archive),
        "progress_hooks": hooks,
        "noplaylist": True,
        "continuedl": True,
        "nopart": False,  # write <name>.part and rename when complete: no partial file under the final name
        "overwrites": False,
        "writeinfojson": False,
        "writethumbnail": False,
        "windowsfilenames": True,
    }
    if cfg.sleep_s:
        opts["sleep_interval"] = cfg.sleep_s
    if cfg.rate_limit:
        opts["ratelimit"] = parse_bytes(cfg.rate_limit)
    return opts

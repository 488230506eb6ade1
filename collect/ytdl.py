"""yt-dlp adapter: option dicts for searching and downloading, and a logger that keeps messages.

Only the yt-dlp Python API is used (``yt_dlp.YoutubeDL(opts)``); no shell, no command strings.
"""

from __future__ import annotations

import logging
import os
import threading
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


class DownloadArchive:
    """yt-dlp's download archive (``<extractor> <id>`` a line), read once per process.

    yt-dlp takes a set-like object as its ``download_archive`` option. Given the file's name
    instead, every ``YoutubeDL`` (one per video) read the whole file again: quadratic in the
    videos of a crawl. This object reads the file once, then on each look only what was appended
    since (by this process's threads, or by other processes on the same root: Ray tasks), and
    appends a finished download's line itself (under yt-dlp's file lock, as yt-dlp does).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ids: set[str] = set()
        self._offset = 0  # bytes of the file read so far, always at a line end
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size == self._offset:
            return
        if size < self._offset:  # truncated or replaced (lines deleted to fetch again): read anew
            self._ids, self._offset = set(), 0
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        self._ids.update(line.strip() for line in complete.decode("utf-8").splitlines() if line.strip())
        self._offset += len(complete)

    def __contains__(self, item: object) -> bool:
        with self._lock:
            self._refresh()
            return item in self._ids

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._ids)

    def add(self, item: str) -> None:
        """Record a finished download: append its line to the file (yt-dlp calls this)."""
        from yt_dlp.utils import locked_file

        with self._lock:
            with locked_file(str(self.path), "a", encoding="utf-8") as f:
                f.write(item + "\n")
            self._ids.add(item)


_ARCHIVES: dict[Path, DownloadArchive] = {}
_ARCHIVES_LOCK = threading.Lock()


def download_archive(path: Path) -> DownloadArchive:
    """The one ``DownloadArchive`` of ``path`` in this process (threads and Ray tasks share it)."""
    key = Path(os.path.abspath(path))
    with _ARCHIVES_LOCK:
        return _ARCHIVES.setdefault(key, DownloadArchive(key))


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
    archive: DownloadArchive | None,
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
        "download_archive": archive,
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

"""Fetch one video into ``<root>/videos/<bucket>/<id>.<ext>``: yt-dlp for URLs, a copy for local paths.

A file appears under its final name only complete: yt-dlp writes ``<name>.part`` and renames it
when the download finishes; a local copy goes through ``common.atomic.atomic_path``. Files are
fanned out over 256 bucket folders (``common.fanout``): a full crawl leaves ~73,000 files, and
finding a video's file by pattern in one such folder read every entry, once per video.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collect.failures import OK, classify, classify_message, one_line
from collect.settings import CrawlSettings
from collect.video_info import info_path, info_saver, licence_refusal, load_info, meta_of
from collect.ytdl import KeepLogger, backoff, download_archive, download_options
from common.atomic import atomic_path
from common.fanout import fanned_path

log = logging.getLogger(__name__)
TEMP_SUFFIXES = (".part", ".ytdl", ".tmp", ".temp")
ARCHIVE = "download_archive.txt"


class Cancelled(Exception):
    """The crawl is stopping (Ctrl-C): abandon this video, its ``.part`` file stays for resuming."""


@dataclass
class Fetched:
    """What fetching one video gave: a status, a reason and, when ok, the final file."""

    status: str
    reason: str = ""
    path: Path | None = None
    transferred: bool = False  # bytes were fetched or copied by this run
    info: dict[str, Any] = field(default_factory=dict)  # video_info.meta_of's fields from yt-dlp


def video_path(videos: Path, video_id: str, ext: str) -> Path:
    """Where the file of ``video_id`` goes: ``videos/<bucket>/<id>.<ext>`` (``common.fanout``)."""
    return fanned_path(videos, video_id, f"{video_id}.{ext}")


def final_file(videos: Path, video_id: str) -> Path | None:
    """The complete file of ``video_id`` (``<bucket>/<id>.<ext>``), ignoring ``.part`` and temporary files."""
    for p in sorted(fanned_path(videos, video_id).parent.glob(f"{video_id}.*")):
        if p.stem == video_id and p.suffix.lower() not in TEMP_SUFFIXES and p.is_file():
            return p
    return None


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def copy_local(cfg: CrawlSettings, video_id: str, source: str, videos: Path) -> Fetched:
    """Copy a local file to ``videos/<bucket>/<id>.<ext>`` (the demo's path: no network)."""
    src = Path(source)
    if not src.is_file():
        return Fetched("not_found", f"no such file: {src}")
    size = src.stat().st_size
    limit = cfg.max_filesize_mb * 2**20
    if size > limit:
        return Fetched("too_large", f"{_mb(size)} > max_filesize_mb {cfg.max_filesize_mb}")
    info = {"title": src.stem}  # what yt-dlp's generic extractor names a file
    done = final_file(videos, video_id)
    if done is not None:
        return Fetched(OK, path=done, info=info)
    ext = "".join(ch for ch in src.suffix.lower() if ch.isalnum()) or "bin"
    dest = video_path(videos, video_id, ext)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Fetched(OK, path=dest, transferred=True, info=info)


def _attempt(cfg: CrawlSettings, video_id: str, url: str, videos: Path, stop: threading.Event) -> Fetched:
    """One yt-dlp run for one video."""
    import yt_dlp

    logger = KeepLogger(prefix=f"{video_id}: ")
    seen: dict[str, Any] = {}
    limit = cfg.max_filesize_mb * 2**20

    def on_progress(d: dict) -> None:
        if stop.is_set():
            raise Cancelled(video_id)
        if d.get("status") == "finished":
            seen["finished"] = d.get("filename")

    def size_filter(info: dict, *, incomplete: bool = False) -> str | None:
        refused = None if incomplete else licence_refusal(cfg.license, meta_of(info))
        if refused:
            seen["not_licensed"] = refused
            return "not licensed: " + refused
        size = info.get("filesize") or info.get("filesize_approx")
        if size and size > limit:
            seen["too_large"] = f"{_mb(size)} > max_filesize_mb {cfg.max_filesize_mb}"
            return "too large: " + seen["too_large"]
        return None

    archive = download_archive(videos.parent / ARCHIVE) if cfg.download_archive else None
    outtmpl = video_path(videos, video_id, "%(ext)s")
    opts = download_options(cfg, logger, outtmpl, archive, [on_progress], size_filter)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.add_post_processor(info_saver(info_path(videos, video_id)), when="before_dl")
            info = ydl.extract_info(url, download=True) or {}
    except Cancelled:
        raise
    except Exception as e:  # yt-dlp raises DownloadError for every per-video failure
        if isinstance(e.__cause__, Cancelled) or any(isinstance(a, Cancelled) for a in e.args):
            raise Cancelled(video_id) from None
        status, reason = classify(e)
        return Fetched(status, reason)
    meta = meta_of(info)
    if "not_licensed" in seen:
        return Fetched("not_licensed", seen["not_licensed"], info=meta)
    if "too_large" in seen:
        return Fetched("too_large", seen["too_large"], info=meta)
    if logger.saw("larger than max-filesize"):
        return Fetched("too_large", f"larger than max_filesize_mb {cfg.max_filesize_mb}", info=meta)
    done = final_file(videos, video_id)
    if done is not None:
        return Fetched(OK, path=done, transferred="finished" in seen, info=meta)
    if logger.saw("has already been recorded in the archive"):
        return Fetched(
            "error", f"listed in {ARCHIVE} but its file is missing; delete that line to fetch it again"
        )
    last = one_line(logger.messages[-1]) if logger.messages else "yt-dlp returned without a file"
    return Fetched(classify_message(last), last, info=meta)


def download(cfg: CrawlSettings, video_id: str, url: str, videos: Path, stop: threading.Event) -> Fetched:
    """Download ``url`` with yt-dlp; a rate-limited answer is retried ``retries`` times with back-off.

    Transport errors are retried inside yt-dlp (``retries``, same back-off); a file already
    complete under its final name is never fetched again: its title and channel come from
    ``video_info/<id>.json``, saved before the download began.
    """
    done = final_file(videos, video_id)
    if done is not None:
        return Fetched(OK, path=done, info=load_info(info_path(videos, video_id)))
    pause = backoff(cfg)
    for attempt in range(cfg.retries + 1):
        result = _attempt(cfg, video_id, url, videos, stop)
        if result.status != "rate_limited" or attempt == cfg.retries:
            return result
        log.info(
            "%s: rate limited, retry %d/%d in %.1f s", video_id, attempt + 1, cfg.retries, pause(attempt)
        )
        if stop.wait(pause(attempt)):
            raise Cancelled(video_id)
    raise AssertionError("unreachable")

"""``video_info/<bucket>/<id>.json``: a video's title, channel, licence and upload date, on disk
before its file can appear.

yt-dlp learns a video's title only when it extracts the video, and ``videos.parquet`` is rewritten
at most every ``SAVE_EVERY_S``. Without this file a kill after ``<id>.<ext>.part`` is renamed and
before the next rewrite leaves a complete file whose row never gets its title: a rerun finds the
file done and does not ask yt-dlp again (and the VR rule of ``filter`` reads titles). yt-dlp's
``before_dl`` hook writes it (atomically) once the video is extracted and before any byte is
fetched; a rerun that finds the file done reads the title back from it. One file per video, so
the folder is fanned out over 256 buckets (``common.fanout``) like ``videos/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.fanout import fanned_path

log = logging.getLogger(__name__)
INFO_DIR = "video_info"


def info_path(videos: Path, video_id: str) -> Path:
    """``<root>/video_info/<bucket>/<id>.json`` for the files under ``<root>/videos``."""
    return fanned_path(videos.parent / INFO_DIR, video_id, f"{video_id}.json")


def meta_of(info: dict[str, Any]) -> dict[str, Any]:
    """The manifest's fields of a yt-dlp info dict: title, channel (or uploader), duration_s,
    license (YouTube's wording, e.g. "Creative Commons Attribution license (reuse allowed)"; None
    when the page states none) and upload_date (YYYYMMDD)."""
    return {
        "title": info.get("title"),
        "channel": info.get("channel") or info.get("uploader"),
        "duration_s": info.get("duration"),
        "license": info.get("license"),
        "upload_date": info.get("upload_date"),
    }


def is_creative_commons(license: str | None) -> bool:
    """YouTube lists a video under Creative Commons: its licence line says so."""
    return bool(license) and "creative commons" in str(license).lower()


def licence_refusal(wanted: str, info: dict[str, Any]) -> str | None:
    """Why a video with ``info`` (``meta_of``'s fields) is not kept under ``--license wanted``;
    None when it is."""
    if wanted == "any" or is_creative_commons(info.get("license")):
        return None
    found = info.get("license")
    return (
        f"licence {found!r} is not Creative Commons"
        if found
        else "no licence recorded (not Creative Commons)"
    )


def load_info(path: Path) -> dict[str, Any]:
    """The saved fields, or ``{}`` when there is no such file or it cannot be read."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:  # a damaged file costs only the title, as before it existed
        log.warning("%s cannot be read (%s): the video keeps no title", path, e)
        return {}
    return saved if isinstance(saved, dict) else {}


def info_saver(path: Path):
    """A yt-dlp post-processor for ``when="before_dl"`` that writes ``meta_of(info)`` to ``path``."""
    from yt_dlp.postprocessor.common import PostProcessor

    class SaveInfo(PostProcessor):
        def run(self, info: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
            write_json(path, meta_of(info))
            return [], info

    return SaveInfo()

"""Video ids: file names and WebDataset keys come from sanitized ids, never from titles."""

from __future__ import annotations

import functools
import hashlib
import re
import urllib.parse
from pathlib import PurePosixPath

from common.release.vnames import MAX_ID  # 80: one limit for every video id, vnames.txt's too

UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")  # no dots: WebDataset keys end at the first dot


def sanitize_id(raw: str, fallback_source: str = "") -> str:
    """``raw`` reduced to ``[A-Za-z0-9_-]`` (runs of anything else become ``_``), at most 80 chars.

    An id with nothing left becomes ``video_<sha1 of fallback_source>``.
    """
    clean = UNSAFE.sub("_", raw).strip("_")[:MAX_ID]
    if clean:
        return clean
    return "video_" + hashlib.sha1((fallback_source or raw).encode()).hexdigest()[:12]


def is_remote(item: str) -> bool:
    """True for ``http(s)://`` and other scheme URLs; False for local paths."""
    return "://" in item


def url_key(item: str) -> str:
    """What two list entries must share to be one video: only the scheme and the host of a URL are
    case-insensitive, so they are lower-cased; the path, query and fragment (where YouTube ids
    live: ``watch?v=dQw4w9WgXcQ`` is not ``watch?v=dqw4w9wgxcq``) and local paths stay as written.
    """
    if not is_remote(item):
        return item
    parts = urllib.parse.urlsplit(item)
    userinfo, at, hostport = parts.netloc.rpartition("@")  # user names and passwords keep their case
    netloc = userinfo + at + hostport.lower()
    return urllib.parse.urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))


@functools.lru_cache(maxsize=1)
def _extractors() -> list:
    from yt_dlp.extractor import gen_extractor_classes

    return [ie for ie in gen_extractor_classes() if ie.ie_key() != "Generic"]


def raw_id_for(item: str) -> str:
    """The id yt-dlp will give ``item``, found without any network request.

    Site URLs use their extractor's id (``watch?v=<id>`` -> ``<id>``); direct links and local
    files use the file stem, like yt-dlp's generic extractor.
    """
    if is_remote(item):
        parsed = urllib.parse.urlparse(item)
        watch = urllib.parse.parse_qs(parsed.query).get("v")
        if watch and (parsed.hostname or "").removeprefix("www.").removeprefix("m.") == "youtube.com":
            return watch[0]  # with noplaylist, watch?v=<id>&list=... downloads only <id>
        for ie in _extractors():
            if ie.suitable(item):
                temp = ie.get_temp_id(item)
                if temp:
                    return str(temp)
                break
        return PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(item).path)).stem
    return PurePosixPath(item.replace("\\", "/")).stem


def video_id_for(item: str) -> str:
    """Sanitized id of a URL or local path (see ``raw_id_for``)."""
    return sanitize_id(raw_id_for(item), fallback_source=item)

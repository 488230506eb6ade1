"""The official LUPerson video list, ``vnames.txt``: one ``country+city+youtube_id`` a line.

The release (DengpanFu/LUPerson, ``LUP/download.py``) splits each line on ``+`` into exactly
three parts, downloads ``https://www.youtube.com/watch?v=<id>`` and saves it as
``<country>/<city>/<line>.mp4``; its detection pickles are named ``<line>.pkl``. crawl keeps the
line in the ``vname`` column so ``build-shards --from-dets`` can match those pickles, and stores
the file as ``videos/<id>.<ext>`` like every other crawled video.

A line is parsed by :func:`common.release.vnames.parse_vname`, which build-shards ``--from-dets``
applies to the same names. A malformed line or a repeated video id is recorded with its reason
and skipped, never fatal; a list with no usable line at all is a ``UsageError``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collect.failures import OK, RETRY_ON_RERUN
from common.atomic import write_json
from common.errors import UsageError
from common.release.vnames import parse_vname

log = logging.getLogger(__name__)
REPORT = "vnames_report.json"


@dataclass(frozen=True)
class VName:
    """One usable line: ``vname`` is the line as written (the release's file and pickle stem)."""

    line: int
    vname: str
    country: str
    city: str
    video_id: str


@dataclass
class VNameList:
    """A parsed ``vnames.txt``: the usable entries, and the skipped lines with their reasons."""

    path: str
    lines: int = 0  # non-blank lines
    entries: list[VName] = field(default_factory=list)
    malformed: list[dict[str, Any]] = field(default_factory=list)  # line, text, reason
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # line, text, first_line, reason


def parse_vnames(text: str, path: str = "vnames.txt") -> VNameList:
    """Every non-blank line of ``text``; a line starting with ``#`` is a comment.

    Video ids are case-sensitive (YouTube's are). The first line of an id wins; a later line
    with the same id is a duplicate, whether it repeats the line or names another place.
    """
    listing = VNameList(path=path)
    first: dict[str, VName] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        item = raw.strip()
        if not item or item.startswith("#"):
            continue
        listing.lines += 1
        try:
            country, city, video_id = parse_vname(item)
        except ValueError as e:
            listing.malformed.append({"line": number, "text": item, "reason": str(e)})
            log.warning("%s:%d: %s, skipped (%s)", path, number, e, item)
            continue
        seen = first.get(video_id)
        if seen is not None:
            reason = (
                f"repeats line {seen.line}"
                if seen.vname == item
                else f"video id already listed on line {seen.line} as {seen.vname}"
            )
            listing.duplicates.append(
                {"line": number, "text": item, "first_line": seen.line, "reason": reason}
            )
            log.warning("%s:%d: %s, skipped (%s)", path, number, reason, item)
            continue
        first[video_id] = VName(number, item, country, city, video_id)
        listing.entries.append(first[video_id])
    return listing


def load_vnames(path: str) -> VNameList:
    """Parse the file at ``path``; ``UsageError`` when it is missing, unreadable or lists no video."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"from_vnames: {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"from_vnames: cannot read {p}: {e}") from None
    listing = parse_vnames(text, str(p))
    if not listing.entries:
        hint = (
            f"; line {listing.malformed[0]['line']}: {listing.malformed[0]['reason']}"
            if listing.malformed
            else ""
        )
        raise UsageError(f"from_vnames: {p} lists no country+city+youtube_id line{hint}")
    return listing


def video_url(template: str, entry: VName) -> str:
    """The URL of one listed video (``vnames_url_template``; YouTube's watch page by default)."""
    return template.format(id=entry.video_id, country=entry.country, city=entry.city, vname=entry.vname)


def report(listing: VNameList, rows: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    """Figures of the listed videos (listed / downloaded / unavailable by status); writes ``REPORT``.

    ``unavailable`` counts permanent failures (not retried); ``to_retry`` the transient ones and
    those not attempted yet. The JSON file also names every skipped line and failed video.
    """
    by_id = {r["video_id"]: r for r in rows}
    listed = [by_id[e.video_id] for e in listing.entries]
    statuses = Counter(r["status"] for r in listed)
    figures = {
        "lines": listing.lines,
        "listed": len(listing.entries),
        "malformed": len(listing.malformed),
        "duplicates": len(listing.duplicates),
        "downloaded": statuses.get(OK, 0),
        "unavailable": {s: n for s, n in sorted(statuses.items()) if s != OK and s not in RETRY_ON_RERUN}
        or 0,
        "to_retry": {s: n for s, n in sorted(statuses.items()) if s in RETRY_ON_RERUN} or 0,
    }
    failed = [
        {k: r[k] for k in ("vname", "video_id", "url", "status", "reason")}
        for r in listed
        if r["status"] != OK
    ]
    write_json(
        root / REPORT,
        {
            "source": listing.path,
            **figures,
            "malformed_lines": listing.malformed,
            "duplicate_lines": listing.duplicates,
            "not_downloaded": failed,
        },
    )
    return figures

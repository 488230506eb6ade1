"""One line of the official LUPerson video list, ``vnames.txt``: ``country+city+youtube_id``.

crawl (``--from-vnames``) reads the list and build-shards (``--from-dets``) reads the same lines
as the names of the released detections; both parse them here, so a line is either listed by
crawl and matched by build-shards, or rejected by both with the same reason (never reported as
``not_listed`` because the two disagreed).

The release (DengpanFu/LUPerson, ``LUP/download.py``) splits each line on ``+`` into exactly three
parts and saves ``<country>/<city>/<line>.mp4``. The rules:

- The video id uses YouTube's alphabet, ``[A-Za-z0-9_-]`` (a leading ``-`` too; never ``+``,
  which splits the line, nor ``.``, which would end a WebDataset key), 1 to ``MAX_ID`` (80)
  characters. Real YouTube ids are 11 characters, but the length is deliberately not fixed to 11:
  ``--vnames-url-template`` points the list at other hosts (and the tests at loopback files named
  ``one-by-one-person-detection``), and 80 is the longest id crawl keeps (``collect.ids`` cuts
  longer ones, so their files would no longer match the line).
- Country and city are non-empty, without spaces around them, and usable as folder names (no
  ``/``, ``\\``, control characters, ``.`` or ``..``): the release makes folders of them.

Before, crawl checked all of this and build-shards only the alphabet and non-empty parts, so a line
such as ``usa+new/york+abc`` was malformed for crawl but became ``not_listed`` in build-shards; it
is now ``bad_vname`` there, with crawl's reason. The stricter rules won because each guards a real
failure (folders, file names) and no valid release line breaks them.
"""

from __future__ import annotations

import re

MAX_ID = 80  # the longest video id crawl keeps (``collect.ids`` cuts longer ones to this)
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]+")  # YouTube's id alphabet: never '+', never '.'
PLACE_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")  # a country or city becomes a folder name


def _check_place(value: str, what: str) -> None:
    if not value:
        raise ValueError(f"empty {what}")
    if value != value.strip():
        raise ValueError(f"{what} {value!r} has spaces around it")
    if value in (".", "..") or PLACE_FORBIDDEN.search(value):
        raise ValueError(f"{what} {value!r} cannot be a folder name")


def parse_vname(text: str) -> tuple[str, str, str]:
    """``"usa+newyork+a-B_c9"`` -> ``("usa", "newyork", "a-B_c9")``; ``ValueError(reason)`` if malformed."""
    parts = text.split("+")
    if len(parts) != 3:
        raise ValueError(f"expected country+city+youtube_id, got {len(parts)} '+'-separated parts")
    country, city, video_id = parts
    _check_place(country, "country")
    _check_place(city, "city")
    if not video_id:
        raise ValueError("empty video id")
    if not YOUTUBE_ID.fullmatch(video_id):
        raise ValueError(f"video id {video_id!r} has characters outside A-Z a-z 0-9 - _")
    if len(video_id) > MAX_ID:
        raise ValueError(f"video id longer than {MAX_ID} characters")
    return country, city, video_id

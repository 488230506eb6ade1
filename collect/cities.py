"""Read line lists: the city list (``--cities``) and the URL/path list (``--urls``)."""

from __future__ import annotations

import logging
import re
import urllib.parse
from pathlib import Path

from common.errors import UsageError

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
COMMENT = re.compile(r"(^|\s)#.*$")  # a '#' inside a URL (a fragment) is not a comment


def resolve_list_path(path: str, what: str) -> Path:
    """``path`` as given, else ``configs/<path>`` (so ``--cities top100.txt`` works from anywhere)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    fallback = CONFIGS / path
    if not p.is_absolute() and fallback.is_file():
        return fallback
    raise UsageError(f"{what}: {p} does not exist")


def read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-blank lines with ``#`` comments removed, as (line number, text); duplicates dropped.

    Each duplicate is logged with the line it repeats; an empty list is a ``UsageError``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{what}: cannot read {path}: {e}") from None
    seen: dict[str, int] = {}
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        item = COMMENT.sub("", raw).strip()
        if not item:
            continue
        key = item.casefold()
        if key in seen:
            log.warning("%s:%d: duplicate of line %d (%s), ignored", path, number, seen[key], item)
            continue
        seen[key] = number
        lines.append((number, item))
    if not lines:
        raise UsageError(f"{what}: {path} lists nothing (only blank lines or # comments)")
    return lines


def load_cities(path: str) -> list[str]:
    """The cities of a city list, in file order, each once."""
    return [city for _, city in read_lines(resolve_list_path(path, "cities"), "cities")]


def load_urls(path: str) -> list[str]:
    """The URLs or local paths of a ``--urls`` file, in file order, each once.

    Relative local paths are resolved against the folder of the list file.
    """
    p = resolve_list_path(path, "urls")
    items = []
    for _, item in read_lines(p, "urls"):
        if item.startswith("file://"):
            item = urllib.parse.unquote(urllib.parse.urlparse(item).path)
        if "://" not in item:
            local = Path(item).expanduser()
            item = str(local if local.is_absolute() else (p.parent / local).resolve())
        items.append(item)
    return items

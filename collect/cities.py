"""Read line lists: the city list (``--cities``) and the URL/path list (``--urls``)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from collect.ids import is_remote, url_key
from common.errors import UsageError

log = logging.getLogger(__name__)
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
COMMENT = re.compile(r"(^|\s)#.*$")  # a '#' inside a URL (a fragment) is not a comment
SCHEMES = ("http", "https")  # the only URLs fetched; a local file is listed by its path


def resolve_list_path(path: str, what: str) -> Path:
    """``path`` as given, else ``configs/<path>`` (so ``--cities top100.txt`` works from anywhere)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    fallback = CONFIGS / path
    if not p.is_absolute() and fallback.is_file():
        return fallback
    raise UsageError(f"{what}: {p} does not exist")


def read_lines(path: Path, what: str, key: Callable[[str], str] = str.casefold) -> list[tuple[int, str]]:
    """Non-blank lines with ``#`` comments removed, as (line number, text); duplicates dropped.

    Two lines with the same ``key`` are duplicates (city names: case-insensitive); each duplicate
    is logged with the line it repeats; an empty list is a ``UsageError``.
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
        k = key(item)
        if k in seen:
            log.warning("%s:%d: duplicate of line %d (%s), ignored", path, number, seen[k], item)
            continue
        seen[k] = number
        lines.append((number, item))
    if not lines:
        raise UsageError(f"{what}: {path} lists nothing (only blank lines or # comments)")
    return lines


def load_cities(path: str) -> list[str]:
    """The cities of a city list, in file order, each once."""
    return [city for _, city in read_lines(resolve_list_path(path, "cities"), "cities")]


def checked_item(item: str, folder: Path, where: str) -> str:
    """An ``http(s)`` URL as written, or a local path made absolute (relative ones against
    ``folder``, the list's); anything else is a ``UsageError`` naming ``where`` (``list:line``).

    ``file://`` and other schemes are refused (yt-dlp would read local files through them), and
    so is a relative path with a ``..`` component, which could climb out of the list's folder;
    an absolute path (``~`` expanded) names its file explicitly and is taken as written.
    """
    if is_remote(item):
        scheme = item.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise UsageError(
                f"urls: {where}: {scheme}:// URLs are refused: only http(s) URLs are fetched, "
                "and a local file is listed by its path"
            )
        return item
    local = Path(item).expanduser()
    if local.is_absolute():
        return str(local)
    if ".." in local.parts:
        raise UsageError(
            f"urls: {where}: {item!r} climbs out of the list's folder with '..'; "
            "give that file by its absolute path instead"
        )
    return str((folder / local).resolve())


def load_urls(path: str) -> list[str]:
    """The URLs or local paths of a ``--urls`` file, in file order, each once.

    Two URLs that differ only in the case of their scheme or host are one; every other part of a
    URL (YouTube ids included) and every local path is case-sensitive. Relative local paths are
    resolved against the folder of the list file (see ``checked_item`` for what is refused).
    """
    p = resolve_list_path(path, "urls")
    lines = read_lines(p, "urls", key=url_key)
    return [checked_item(item, p.parent, f"{p}:{number}") for number, item in lines]

"""``<root>/takedowns.jsonl``: the takedown requests a workspace honours, and the one being carried out.

One JSON object a line, appended when a request is done: ``id``, ``time`` (ISO-8601, UTC),
``reason``, ``videos`` and ``keys`` (the ids that matched the build: in force), ``crops_removed``,
``shards_rewritten`` (tar names) and ``unmatched`` (ids that matched nothing: not in force).
``<root>/takedown.pending.json`` holds the request being carried out, written before any shard
changes and removed after its line is appended; it is in force from the moment it is written.

Every build reads them through :func:`taken_down`: a crop whose key, or whose video id, a request
names is never written again, and is recorded in ``samples.parquet`` with status :data:`STATUS`
and the reason of the first request that named it. ``python pipeline.py takedown``
(``shards.release.takedown``) is the one writer. A line that cannot be read stops every reader
with one line naming it: a build that skipped it would bring taken-down crops back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.atomic import atomic_path, write_json
from common.errors import UsageError, one_line

LOG = "takedowns.jsonl"
PENDING = "takedown.pending.json"
STATUS = "taken_down"  # samples.parquet's status of a crop a request removed
REMEDY = "restore it from a backup (builds read it to keep taken-down crops out)"


@dataclass(frozen=True)
class Takedowns:
    """The requests in force: each named key and video id with the number of the first request that
    named it, and every request's reason."""

    reasons: tuple[str, ...] = ()
    keys: Mapping[str, int] = field(default_factory=dict)
    videos: Mapping[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.keys or self.videos)

    def reason(self, key: str, video_id: str) -> str | None:
        """The reason a crop is taken down (the first request naming its key or its video), or ``None``."""
        named = [self.keys.get(key), self.videos.get(video_id) if video_id else None]
        first = min((n for n in named if n is not None), default=None)
        return None if first is None else self.reasons[first]


def log_path(root: Path) -> Path:
    return Path(root) / LOG


def pending_path(root: Path) -> Path:
    return Path(root) / PENDING


def _checked(entry: Any, where: str) -> dict[str, Any]:
    """``entry`` when it has what a reader needs (a reason, lists of video ids and keys)."""
    ok = isinstance(entry, dict) and isinstance(entry.get("id"), str) and isinstance(entry.get("reason"), str)
    for name in ("videos", "keys"):
        ids = entry.get(name) if isinstance(entry, dict) else None
        ok = ok and isinstance(ids, list) and all(isinstance(i, str) and i for i in ids)
    if not ok:
        raise UsageError(f"{where} is not a takedown request; {REMEDY}")
    return entry


def read_log(root: Path) -> list[dict[str, Any]]:
    """The done requests, oldest first (``[]`` when there is no log)."""
    path = log_path(root)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} cannot be read ({one_line(str(e), 120)}); {REMEDY}") from None
    entries = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        entries.append(_checked(entry, f"{path} line {n}"))
    return entries


def read_pending(root: Path) -> dict[str, Any] | None:
    """The request being carried out (``None``: none)."""
    path = pending_path(root)
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        entry = None
    return _checked(entry, str(path))


def write_pending(root: Path, request: dict[str, Any]) -> None:
    """Put ``request`` in force (atomically, on disk) before any shard changes."""
    write_json(pending_path(root), request)


def append(root: Path, entry: dict[str, Any]) -> None:
    """Append ``entry`` as the log's last line (the log is rewritten whole, atomically); an entry
    whose ``id`` is logged already is not added again (a rerun after a kill between the two)."""
    done = read_log(root)
    if any(old["id"] == entry["id"] for old in done):
        return
    path = log_path(root)
    before = path.read_bytes() if path.is_file() else b""
    line = json.dumps(_checked(entry, "the new request"), sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_bytes(before + line.encode("utf-8"))


def clear_pending(root: Path) -> None:
    pending_path(root).unlink(missing_ok=True)


def taken_down(root: Path) -> Takedowns:
    """Every request in force in ``root``: the log's, then the pending one."""
    entries = read_log(root)
    pending = read_pending(root)
    if pending is not None:
        entries.append(pending)
    keys: dict[str, int] = {}
    videos: dict[str, int] = {}
    for n, entry in enumerate(entries):
        for key in entry["keys"]:
            keys.setdefault(key, n)
        for video in entry["videos"]:
            videos.setdefault(video, n)
    return Takedowns(tuple(entry["reason"] for entry in entries), keys, videos)

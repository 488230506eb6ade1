"""``build-shards --from-images DIR``: every image file of a folder tree becomes one sample.

Keys come from the path relative to DIR without its extension, with every character other than
letters, digits, ``_`` and ``-`` replaced by ``_`` (``TownCentre/37_796.jpg`` ->
``TownCentre_37_796``); a key already taken gets ``_dup1``, ``_dup2``, ... in sorted path order.
JPEG files are stored byte-for-byte; other formats are decoded and re-encoded as JPEG. A FIFO,
socket or device named like an image is recorded as ``not_a_file`` without being read. A hidden
image file (its name starts with ``.``, e.g. macOS's ``._x.jpg``) is recorded as ``hidden``, not
read, with a key taken after every visible file's; hidden folders are not entered, only counted.

``--tracklet-pattern REGEX`` (a named group ``tracklet``, matched against the whole relative
path) groups crops of one person into a tracklet: the group's text is the tracklet id the crop's
JSON names (``"tracklet"``), e.g. ``(?P<tracklet>[0-9]+)_[0-9]+[.]jpg`` on TownCentre's
``<person>_<frame>.jpg``. Images that do not match are single crops (no ``tracklet`` key). Each
path must match within ``MATCH_LIMIT_S`` (a catastrophic pattern such as ``(a+)+`` would run for
ages): ``re`` checks for signals while it matches, so a ``SIGALRM`` timer can stop it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from common.errors import UsageError, require_path
from shards.write.items import Item, Result, Task, failed, image_sample, safe_key

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", ".gif",
}  # fmt: skip
CHUNK = 256  # images per worker task
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device"}  # fmt: skip
log = logging.getLogger(__name__)
HIDDEN_REASON = "a hidden file (its name starts with '.'): not read"
MATCH_LIMIT_S = 2.0  # per path; a sane pattern takes microseconds
TICK_S = 0.25  # how often the timer looks at the path being matched


class Listing(NamedTuple):
    """What is under a ``--from-images`` folder; paths relative to it, POSIX, sorted."""

    images: list[str]  # files with an image suffix
    others: int  # other files, hidden ones included
    hidden: list[str]  # image files whose name starts with "."
    hidden_folders: list[str]  # folders whose name starts with ".": not entered


def list_images(folder: Path) -> Listing:
    """The image files under ``folder`` and what else is there."""
    images: list[str] = []
    hidden: list[str] = []
    hidden_folders: list[str] = []
    others = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        prefix = Path(dirpath).relative_to(folder).as_posix() + "/"
        prefix = "" if prefix == "./" else prefix
        hidden_folders += [prefix + d for d in dirnames if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .git, .snapshot, ...
        for name in filenames:
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                others += 1
            else:
                (hidden if name.startswith(".") else images).append(prefix + name)
    return Listing(sorted(images), others, sorted(hidden), sorted(hidden_folders))


def unique_keys(paths: list[str], taken: set[str] | None = None) -> dict[str, str]:
    """Relative path -> key, unique (also against ``taken``), assigned in sorted path order."""
    keys: dict[str, str] = {}
    taken = set(taken or ())
    for rel in sorted(paths):
        base = safe_key(PurePosixPath(rel).with_suffix("").as_posix())
        key, n = base, 0
        while key in taken:
            n += 1
            key = f"{base}_dup{n}"
        taken.add(key)
        keys[rel] = key
    return keys


def tracklet_of(rel: str, pattern: re.Pattern[str] | None) -> dict[str, str]:
    """``{"tracklet": id}`` when ``pattern`` matches the whole relative path, else ``{}``."""
    match = pattern.fullmatch(rel) if pattern is not None else None
    return {"tracklet": match.group("tracklet")} if match and match.group("tracklet") else {}


class SlowPattern(Exception):
    """A ``--tracklet-pattern`` still matching one path after ``MATCH_LIMIT_S``."""


@contextlib.contextmanager
def match_clock(current: list) -> Iterator[None]:
    """Raise ``SlowPattern`` in the body once ``current == [path, start]`` is older than
    ``MATCH_LIMIT_S``; any timer armed before is re-armed after. Main thread only (signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def tick(signum: int, frame: object) -> None:
        if time.monotonic() - current[1] > MATCH_LIMIT_S:
            raise SlowPattern(current[0])

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, tick)
    earlier = signal.setitimer(signal.ITIMER_REAL, TICK_S, TICK_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if earlier[0] > 0:
            left = earlier[0] - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), earlier[1])


def tracklets_of(paths: list[str], text: str) -> dict[str, dict[str, str]]:
    """``tracklet_of`` each path with the pattern ``text``, each match within ``MATCH_LIMIT_S``."""
    pattern = re.compile(text)
    current = ["", time.monotonic()]
    found = {}
    try:
        with match_clock(current):
            for rel in paths:
                current[:] = rel, time.monotonic()
                found[rel] = tracklet_of(rel, pattern)
    except SlowPattern as e:
        raise UsageError(
            f"--tracklet-pattern {text!r} took over {MATCH_LIMIT_S:g} s to match {e.args[0]!r} "
            "(nested repeats such as (a+)+ backtrack without end): simplify it"
        ) from None
    return found


def plan(folder: str, tracklet_pattern: str | None = None) -> tuple[list[Task], dict[str, int]]:
    """Tasks of up to ``CHUNK`` images in sorted key order, and counts for the summary."""
    root = require_path(folder, "--from-images", is_dir=True).resolve()
    found = list_images(root)
    if found.hidden_folders:
        log.warning(
            "%d hidden folder(s) not entered, e.g. %s", len(found.hidden_folders), found.hidden_folders[0]
        )
    keys = unique_keys(found.images)
    keys |= unique_keys(found.hidden, taken=set(keys.values()))  # the visible files' keys never move
    tracklets = tracklets_of(found.images, tracklet_pattern) if tracklet_pattern else {}
    items = [Item(keys[rel], {"path": rel, **tracklets.get(rel, {})}) for rel in found.images]
    items += [Item(keys[rel], {"path": rel, "hidden": True}) for rel in found.hidden]
    items.sort(key=lambda i: i.key)
    tasks = [
        Task("images", {"root": str(root)}, tuple(items[i : i + CHUNK])) for i in range(0, len(items), CHUNK)
    ]
    counts = {
        "image_files": len(found.images) + len(found.hidden),
        "hidden_image_files": len(found.hidden),
        "hidden_folders_skipped": len(found.hidden_folders),
        "other_files_ignored": found.others,
    }
    if tracklet_pattern:
        counts["tracklets"] = len({t["tracklet"] for t in tracklets.values() if t})
        counts["images_without_tracklet"] = sum(not t for t in tracklets.values())
    return tasks, counts


class NotRegular(Exception):
    """A path that names a FIFO, socket or device rather than a file's bytes."""


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file; ``NotRegular`` for anything else (a FIFO named ``x.jpg``
    would block a plain read forever). Opened without blocking, then checked on the open file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(f"not a regular file ({KINDS.get(stat.S_IFMT(mode), 'special file')})")
        return f.read()


def tracklet_of_item(item: Item) -> dict[str, str]:
    return {"tracklet": item.payload["tracklet"]} if "tracklet" in item.payload else {}


def run(task: Task, quality: int) -> list[Result]:
    """Read, check and (for non-JPEG) re-encode each image of the task."""
    root = Path(task.context["root"])
    results = []
    for item in task.items:
        rel = item.payload["path"]
        values = {"source": "images", "source_id": rel}
        if item.payload.get("hidden"):
            results.append(failed(item.key, "hidden", HIDDEN_REASON, **values))
            continue
        try:
            data = read_regular(root / rel)
        except NotRegular as e:
            results.append(failed(item.key, "not_a_file", str(e), **values))
            continue
        except OSError as e:
            results.append(failed(item.key, "unreadable", f"{type(e).__name__}: {e}", **values))
            continue
        meta = {"source": "images", "path": rel, **tracklet_of_item(item)}
        results.append(image_sample(item.key, data, quality, meta, **values))
    return results

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

The plan never holds the listing: each folder's files go to a sort on disk (``SortedSpill``) as
``(base key, payload)``; one pass over the sorted rows finds the few bases that collide (and what
their ``_dupN`` could take), which get their keys from ``unique_keys`` exactly as over the whole
listing; a second pass merges them back and writes the plan file (``TaskFile``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import operator
import os
import posixpath
import re
import signal
import stat
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from common.errors import UsageError, require_path
from common.manifests.samples import safe_key
from shards.write.faces import Encoding
from shards.write.items import Item, Result, Task, failed, image_sample
from shards.write.spill import SortedSpill, pair_schema
from shards.write.task_file import TaskFile, payload_json, plan_space

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
DUP_SUFFIX = re.compile(r"(.+)_dup[0-9]+")  # a key unique_keys may give another file of the base


class Listing(NamedTuple):
    """What is under a ``--from-images`` folder; paths relative to it, POSIX, sorted."""

    images: list[str]  # files with an image suffix
    others: int  # other files, hidden ones included
    hidden: list[str]  # image files whose name starts with "."
    hidden_folders: list[str]  # folders whose name starts with ".": not entered


@dataclass
class Skipped:
    """What a walk met besides image files: other files, and hidden folders it did not enter."""

    others: int = 0
    hidden_folders: list[str] = field(default_factory=list)


def walk_images(folder: Path, skipped: Skipped) -> Iterator[tuple[list[str], list[str]]]:
    """``(image files, hidden image files)`` of each folder under ``folder``, paths relative to it
    (POSIX); other files and hidden folders are counted in ``skipped``."""
    for dirpath, dirnames, filenames in os.walk(folder):
        prefix = Path(dirpath).relative_to(folder).as_posix() + "/"
        prefix = "" if prefix == "./" else prefix
        skipped.hidden_folders += [prefix + d for d in dirnames if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # .git, .snapshot, ...
        images: list[str] = []
        hidden: list[str] = []
        for name in filenames:
            if os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                skipped.others += 1
            else:
                (hidden if name.startswith(".") else images).append(prefix + name)
        yield images, hidden


def list_images(folder: Path) -> Listing:
    """The image files under ``folder`` and what else is there."""
    skipped = Skipped()
    images: list[str] = []
    hidden: list[str] = []
    for found, found_hidden in walk_images(folder, skipped):
        images += found
        hidden += found_hidden
    return Listing(sorted(images), skipped.others, sorted(hidden), sorted(skipped.hidden_folders))


def unique_keys(paths: list[str], taken: set[str] | None = None) -> dict[str, str]:
    """Relative path -> key, unique (also against ``taken``), assigned in sorted path order."""
    keys: dict[str, str] = {}
    taken = set(taken or ())
    for rel in sorted(paths):
        base = base_key(rel)
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


def base_key(rel: str) -> str:
    """The key of a relative path before duplicates are told apart: ``a/b.c.jpg`` -> ``a_b_c``
    (the path without its suffix; ``os.walk`` paths need none of ``PurePosixPath``'s clean-up,
    which took most of a plan's time)."""
    return safe_key(posixpath.splitext(rel)[0])


def colliding(rows: Iterable[tuple[str, str]]) -> tuple[set[str], list[tuple[str, str]]]:
    """The base keys that may not stay as they are, and their ``(base, payload)`` rows, from rows
    sorted by base key: a base several files share, and one a ``_dupN`` of such a base could take
    (``DUP_SUFFIX``; its base sorts before it, so it is known by then). Every other file keeps its
    base: no key :func:`unique_keys` gives the colliding rows can equal it."""
    bases: set[str] = set()
    found: list[tuple[str, str]] = []
    for base, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        shared = list(group)
        taken_by = DUP_SUFFIX.fullmatch(base) if "_dup" in base else None
        if len(shared) > 1 or (taken_by and taken_by.group(1) in bases):
            bases.add(base)
            found += shared
    return bases, found


def resolved(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(key, payload)`` of the colliding rows, keyed as :func:`unique_keys` keys a whole folder
    (visible files in sorted path order, then hidden ones), sorted by key."""
    payloads = {json.loads(payload)["path"]: payload for _, payload in rows}
    hidden = {rel for rel, payload in payloads.items() if json.loads(payload).get("hidden")}
    keys = unique_keys([rel for rel in payloads if rel not in hidden])
    keys |= unique_keys(list(hidden), taken=set(keys.values()))  # the visible files' keys never move
    return sorted((keys[rel], payload) for rel, payload in payloads.items())


def keyed(spill: SortedSpill) -> Iterator[tuple[str, str]]:
    """``(key, payload)`` of every file of the spill (``(base key, payload)`` rows), in key order."""
    bases, rows = colliding(spill.merged())
    kept = ((base, payload) for base, payload in spill.merged() if base not in bases)
    return heapq.merge(kept, resolved(rows))


def spill_images(root: Path, tracklet_pattern: str | None, spill: SortedSpill) -> dict[str, int]:
    """Every image file under ``root`` into ``spill`` as ``(base key, payload)``; the counts."""
    skipped, counts, tracklets = Skipped(), Counter[str](), set()
    for found, hidden in walk_images(root, skipped):
        matched = tracklets_of(found, tracklet_pattern) if tracklet_pattern else {}
        for rel in found:
            tracklet = matched.get(rel, {})
            tracklets.update(tracklet.values())
            counts["images_without_tracklet"] += not tracklet
            spill.add((base_key(rel), payload_json({"path": rel, **tracklet})))
        for rel in hidden:
            spill.add((base_key(rel), payload_json({"path": rel, "hidden": True})))
        counts["image_files"] += len(found) + len(hidden)
        counts["hidden_image_files"] += len(hidden)
    if skipped.hidden_folders:
        first = min(skipped.hidden_folders)
        log.warning("%d hidden folder(s) not entered, e.g. %s", len(skipped.hidden_folders), first)
    summary = {name: counts[name] for name in ("image_files", "hidden_image_files")}
    summary |= {"hidden_folders_skipped": len(skipped.hidden_folders), "other_files_ignored": skipped.others}
    if tracklet_pattern:
        summary |= {"tracklets": len(tracklets), "images_without_tracklet": counts["images_without_tracklet"]}
    return summary


def plan(
    folder: str, tracklet_pattern: str | None = None, spill: Path | None = None
) -> tuple[TaskFile, dict[str, int]]:
    """Tasks of up to ``CHUNK`` images in sorted key order (kept on disk in ``spill``, a temporary
    folder when ``None``), and counts for the summary."""
    root = require_path(folder, "--from-images", is_dir=True).resolve()
    where, keep = plan_space(spill)
    files = SortedSpill(where / "images", pair_schema())
    counts = spill_images(root, tracklet_pattern, files)
    tasks = TaskFile.write(where / "images.plan", "images", {"root": str(root)}, keyed(files), CHUNK, keep)
    files.remove()  # the plan holds it all
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


def run(task: Task, encoding: Encoding) -> list[Result]:
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
        results.append(image_sample(item.key, data, encoding, meta, **values))
    return results

"""``build-shards --from-images DIR``: every image file of a folder tree becomes one sample.

Keys come from the path relative to DIR without its extension, with every character other than
letters, digits, ``_`` and ``-`` replaced by ``_`` (``TownCentre/37_796.jpg`` ->
``TownCentre_37_796``); a key already taken gets ``_dup1``, ``_dup2``, ... in sorted path order.
JPEG files are stored byte-for-byte; other formats are decoded and re-encoded as JPEG. A FIFO,
socket or device named like an image is recorded as ``not_a_file`` without being read.

``--tracklet-pattern REGEX`` (a named group ``tracklet``, matched against the whole relative
path) groups crops of one person into a tracklet: the group's text is the tracklet id the crop's
JSON names (``"tracklet"``), e.g. ``(?P<tracklet>[0-9]+)_[0-9]+[.]jpg`` on TownCentre's
``<person>_<frame>.jpg``. Images that do not match are single crops (no ``tracklet`` key).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from common.errors import require_path
from shards.write.items import Item, Result, Task, failed, image_sample, safe_key

IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff",
    ".ppm", ".pgm", ".pbm", ".pnm", ".gif",
}  # fmt: skip
CHUNK = 256  # images per worker task
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device"}  # fmt: skip


def list_images(folder: Path) -> tuple[list[str], int]:
    """Relative POSIX paths of the image files under ``folder`` (sorted), and how many others."""
    images: list[str] = []
    others = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        prefix = Path(dirpath).relative_to(folder).as_posix() + "/"
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                images.append(name if prefix == "./" else prefix + name)
            else:
                others += 1
    return sorted(images), others


def unique_keys(paths: list[str]) -> dict[str, str]:
    """Relative path -> key, unique, assigned in sorted path order."""
    keys: dict[str, str] = {}
    taken: set[str] = set()
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


def plan(folder: str, tracklet_pattern: str | None = None) -> tuple[list[Task], dict[str, int]]:
    """Tasks of up to ``CHUNK`` images in sorted key order, and counts for the summary."""
    root = require_path(folder, "--from-images", is_dir=True).resolve()
    paths, others = list_images(root)
    keys = unique_keys(paths)
    pattern = re.compile(tracklet_pattern) if tracklet_pattern else None
    items = sorted(
        (Item(keys[rel], {"path": rel, **tracklet_of(rel, pattern)}) for rel in paths), key=lambda i: i.key
    )
    tasks = [
        Task("images", {"root": str(root)}, tuple(items[i : i + CHUNK])) for i in range(0, len(items), CHUNK)
    ]
    counts = {"image_files": len(paths), "other_files_ignored": others}
    if pattern is not None:
        counts["tracklets"] = len({i.payload["tracklet"] for i in items if "tracklet" in i.payload})
        counts["images_without_tracklet"] = sum("tracklet" not in i.payload for i in items)
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

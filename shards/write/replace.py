"""``build-shards --replace-shards``: build a new plan beside the old shards, swap it in when complete.

The new plan is written to ``<root>/shards.next`` (resumable there like any build); only once its
index and manifest are written does the swap run: ``shards`` -> ``.shards.old``, ``shards.next`` ->
``shards``, then ``.shards.old`` is deleted. A run killed inside the swap is finished by the next
build-shards on that root (``recover``), so the root ends with the old or the new shards, whole.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
CURRENT, NEXT, OLD = "shards", "shards.next", ".shards.old"


def staging(root: Path) -> Path:
    return root / NEXT


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(root: Path) -> None:
    """Finish a swap that a killed run left half done (``.shards.old`` still there)."""
    old, current, new = root / OLD, root / CURRENT, root / NEXT
    if not old.is_dir():
        return
    if not current.exists():
        (new if new.is_dir() else old).rename(current)  # the new shards were complete; else undo
        _sync_dir(root)
    if old.exists():
        log.warning("finishing an interrupted --replace-shards: removing %s", old)
        shutil.rmtree(old)


def swap_in(root: Path) -> None:
    """Make the complete ``shards.next`` the root's ``shards``, then delete the old shards."""
    old, current, new = root / OLD, root / CURRENT, root / NEXT
    recover(root)
    if current.exists():
        current.rename(old)
    new.rename(current)
    _sync_dir(root)
    log.warning("replaced the previous shards with the new plan's; removing %s", old)
    shutil.rmtree(old, ignore_errors=True)

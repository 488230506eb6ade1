"""The workspace a command runs in: checked before any work starts, locked while the work runs.

A command refused as bad input (``UsageError``) leaves the disk as it found it: the lock files
(``common.lock``) and the empty folders it created for them are removed again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from common.errors import UsageError
from common.lock import folder_lock

LockMode = Literal["exclusive", "shared"] | None


def check_root(root: Path, writes: bool) -> list[Path]:
    """One line instead of a traceback for a root that is a file or cannot be created; the
    folders created for a command that ``writes``."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file, not a folder")
    return make_folder(root, f"--root {root}") if writes else []


def make_folder(folder: Path, what: str) -> list[Path]:
    """``mkdir -p folder``; the folders it created, outermost first (``UsageError`` when it cannot)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{what} cannot be created ({e.strerror})") from None
    return missing


def is_lock_holder() -> bool:
    """Rank 0 of a distributed run (torchrun sets ``RANK``), or the only process: the one that
    locks the workspace, saves the settings, logs below warnings and prints the summary."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def _removed_if_refused(folders: list[Path]) -> Iterator[None]:
    """Remove ``folders`` (innermost first, only when empty) when the body raises ``UsageError``."""
    try:
        yield
    except UsageError:
        for folder in reversed(folders):
            with contextlib.suppress(OSError):  # not empty, or gone: leave it
                folder.rmdir()
        raise


@contextlib.contextmanager
def hold_workspace(
    root: Path, stage: str, mode: LockMode, run_dir: Path | None = None, reads: Iterable[Path] = ()
) -> Iterator[None]:
    """Check ``root``, then hold its lock in ``mode``, ``run_dir``'s exclusively and each of the
    other roots in ``reads`` shared (the roots whose files the command reads), for the body."""
    created = check_root(root, writes=mode == "exclusive" or run_dir is not None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_removed_if_refused(created))  # entered first: runs after the locks go
        if mode is not None and root.is_dir():
            stack.enter_context(folder_lock(root, stage, shared=mode == "shared"))
        if run_dir is not None:
            created += make_folder(run_dir, str(run_dir))
            stack.enter_context(folder_lock(run_dir, stage))
        locked = {root.resolve()}
        for other in reads:
            if other.is_dir() and other.resolve() not in locked:
                locked.add(other.resolve())
                stack.enter_context(folder_lock(other, stage, shared=True))
        yield

"""The workspace a command runs in: checked before any work starts, locked while the work runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from common.errors import UsageError
from common.lock import folder_lock

LockMode = Literal["exclusive", "shared"] | None


def check_root(root: Path, writes: bool) -> None:
    """One line instead of a traceback for a root that is a file or cannot be created."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"--root {root} is a file, not a folder")
    if writes:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--root {root} cannot be created ({e.strerror})") from None


def is_lock_holder() -> bool:
    """The process that locks for a distributed run: rank 0, on node 0 (torchrun sets ``RANK``)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def hold_workspace(root: Path, stage: str, mode: LockMode, run_dir: Path | None = None) -> Iterator[None]:
    """Check ``root``, then hold its lock in ``mode`` and ``run_dir``'s exclusively, for the body."""
    check_root(root, writes=mode == "exclusive" or run_dir is not None)
    with contextlib.ExitStack() as stack:
        if mode is not None and root.is_dir():
            stack.enter_context(folder_lock(root, stage, shared=mode == "shared"))
        if run_dir is not None:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"{run_dir} cannot be created ({e.strerror})") from None
            stack.enter_context(folder_lock(run_dir, stage))
        yield

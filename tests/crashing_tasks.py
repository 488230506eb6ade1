"""Task functions that kill their own process on chosen items, importable by spawned pool workers
(a test's closure cannot be pickled to them): the stand-ins for a decoder that segfaults."""

from __future__ import annotations

import os
from pathlib import Path


def doubled_or_abort(item: str) -> str:
    """``item * 2``; ``os.abort()`` (SIGABRT, as a heap corruption ends) on items starting ``crash``."""
    if item.startswith("crash"):
        os.abort()
    return item * 2


def probe_or_abort(task: tuple[str, str, int, int]):
    """filter's probe task, except that it aborts its process on a video file whose name holds ``crash``."""
    from filter.videos import cached_probe

    path, cache, count, width = task
    if "crash" in Path(path).name:
        os.abort()
    return cached_probe(path, count, width, Path(cache))

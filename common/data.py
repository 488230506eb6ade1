"""Where the project finds its sample data: one answer for the demo, the benchmarks and the tests.

In order: ``--data DIR`` (a command's flag), the ``LUPERSON_DATA`` environment variable, the
workshop's ``../shared/data`` beside the checkout when it exists, else the user's cache folder
(``~/.cache/luperson`` on Linux, the platform's cache convention elsewhere), where
``python pipeline.py fetch-samples`` puts what it fetches.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LUPERSON_DATA"
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def cache_folder() -> Path:
    """The per-user cache folder (``pooch.os_cache``: platformdirs' user cache directory)."""
    import pooch

    return Path(pooch.os_cache("luperson"))


def data_root(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(folder, where it came from)``: ``--data``, ``LUPERSON_DATA``, ``../shared/data`` or
    the cache, the first that is given (or, for ``../shared/data``, exists)."""
    if explicit:
        return Path(explicit), "--data"
    if os.environ.get(ENV):
        return Path(os.environ[ENV]), ENV
    if SHARED.is_dir():
        return SHARED, "../shared/data"
    return cache_folder(), "the user cache"

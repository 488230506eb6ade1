"""The one vocabulary of the workspace files: a ``status`` column holding a code from a closed set,
and a ``reason`` column (or, for per-box files, the file's ``note``) saying why in one line.

``videos.parquet``, ``video_filter.parquet``, ``detections.parquet``, ``detections/<video>.parquet``
and ``samples.parquet`` all use these two names; each file's module lists its codes in
``STATUSES`` and its writer refuses any other. A reader whose codes name files (the report's
example images are named by the box status) checks them too, with :func:`check_read_statuses`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from common.errors import UsageError, one_line


def check_statuses(file: str, values: Iterable[object], allowed: tuple[str, ...]) -> None:
    """``ValueError`` (a programming error, not a user's) when a status is not one of ``allowed``."""
    unknown = sorted({str(v) for v in values} - set(allowed))
    if unknown:
        raise ValueError(f"{file}: unknown status codes {unknown}; allowed: {list(allowed)}")


def check_read_statuses(path: Path, values: Iterable[object], allowed: tuple[str, ...], remedy: str) -> None:
    """``UsageError`` naming ``path`` when a status read from it is not one of ``allowed``: the
    file was not written by this program (or was altered since), and its codes are not used."""
    unknown = sorted({str(v) for v in values} - set(allowed))
    if unknown:
        shown = one_line(repr(unknown[0]), 80)
        raise UsageError(f"{path}: status {shown} is not one of {', '.join(allowed)}; {remedy}")

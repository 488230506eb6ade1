"""The one vocabulary of the workspace files: a ``status`` column holding a code from a closed set,
and a ``reason`` column (or, for per-box files, the file's ``note``) saying why in one line.

``videos.parquet``, ``video_filter.parquet``, ``detections.parquet``, ``detections/<video>.parquet``
and ``samples.parquet`` all use these two names; each file's module lists its codes in
``STATUSES`` and its writer refuses any other.
"""

from __future__ import annotations

from collections.abc import Iterable


def check_statuses(file: str, values: Iterable[object], allowed: tuple[str, ...]) -> None:
    """``ValueError`` (a programming error, not a user's) when a status is not one of ``allowed``."""
    unknown = sorted({str(v) for v in values} - set(allowed))
    if unknown:
        raise ValueError(f"{file}: unknown status codes {unknown}; allowed: {list(allowed)}")

"""Decode exactly the requested frames of a video.

``read_frames`` is the one frame reader of the project: detection samples with it and the shard
writer re-decodes the same frames with it, so a crop always comes from the frame its box was found on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def read_frames(path: str | Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for each requested index in ascending order; frames are BGR uint8.

    Frames between requested ones are skipped with ``grab()`` (no colour conversion). Indices past
    the end of the stream are not yielded. Raises ``OSError`` when the file cannot be opened.
    """
    import cv2

    wanted = sorted(set(int(i) for i in indices))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open video {path}")
    try:
        pos = 0
        for index in wanted:
            while pos < index:
                if not cap.grab():
                    return
                pos += 1
            ok, frame = cap.read()
            if not ok:
                return
            pos += 1
            yield index, frame
    finally:
        cap.release()

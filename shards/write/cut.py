"""The decode-then-cut loop shared by the video sources (own detections, ``--from-dets``).

A video's needed frames are decoded once each, in order (``common.media.frames.read_frames``);
the caller's ``cut`` turns each of a frame's items into a :class:`Result` (its own box rounding
and metadata), and its ``fail`` builds the failure of every item left uncut. Why an item is left
uncut: the video cannot be read (``video_unreadable``), ``cut`` refused the video
(:class:`Refused`, e.g. ``resolution_mismatch``), else its frame never came
(``frame_unreadable``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from common.media.frames import read_frames
from shards.write.items import Item, Result

FRAME_UNREADABLE = ("frame_unreadable", "the frame is past the end of the stream or cannot be decoded")

Cut = Callable[[Item, np.ndarray], Result]
Fail = Callable[[Item, str, str], Result]


class Refused(Exception):
    """Raised by a ``cut``: no crop of this video; every item not yet done fails with ``status``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def cut_video(
    path: str | Path,
    items: Sequence[Item],
    by_frame: Mapping[int, Sequence[Item]],
    cut: Cut,
    fail: Fail,
    done: Mapping[str, Result] | None = None,
) -> list[Result]:
    """One result per item of ``items``, in their order: ``done``'s, else cut, else failed.

    ``by_frame`` maps a 0-based frame number to the items cut from it; the video is not opened
    when it is empty.
    """
    results = dict(done or {})
    problem = FRAME_UNREADABLE
    try:
        for index, frame in read_frames(Path(path), sorted(by_frame)) if by_frame else ():
            for item in by_frame.get(index, ()):
                results[item.key] = cut(item, frame)
    except Refused as e:
        problem = (e.status, e.reason)
    except OSError as e:
        problem = ("video_unreadable", f"{type(e).__name__}: {e}")
    return [results[item.key] if item.key in results else fail(item, *problem) for item in items]

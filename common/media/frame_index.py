"""The packet index of a video stream, and which packets must be decoded to get given frames.

Demuxing (reading packets without decoding them) is cheap: it gives every frame's timestamp and
keyframe flag. Frame ``i`` is the i-th smallest presentation timestamp among packets that are not
marked "discard" (MP4 edit lists trim such frames; decoders drop them), which is exactly the i-th
frame that a read-every-frame loop returns.

To decode frame ``i`` only the packets from the keyframe that starts its group of pictures (GOP)
up to frame ``i``'s own packet are needed; the rest of the video can be skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class StreamIndex:
    """Packets of the first video stream, in decode order."""

    pts: np.ndarray  # (P,) int64 presentation timestamps
    keyframe: np.ndarray  # (P,) bool
    discard: np.ndarray  # (P,) bool: decoded but never shown (edit lists)
    declared_frames: int  # the container's frame count, 0 when it does not say
    width: int
    height: int
    fps: float
    codec: str

    @property
    def n_frames(self) -> int:
        """Frames a read-every-frame loop returns."""
        return int((~self.discard).sum())

    @property
    def frame_pts(self) -> np.ndarray:
        """Presentation timestamp of frame 0, 1, ... (sorted pts of the shown packets)."""
        return np.sort(self.pts[~self.discard])

    @property
    def truncated(self) -> bool:
        """Fewer packets than the container declares: the file was cut short."""
        return self.declared_frames > 0 and len(self.pts) < self.declared_frames

    @property
    def seekable(self) -> bool:
        """True when packet-level planning is exact: unique timestamps and a keyframe first."""
        shown = self.pts[~self.discard]
        return bool(len(self.pts) > 0 and self.keyframe[0] and len(np.unique(shown)) == len(shown))


def index_video(path: str | Path) -> StreamIndex:
    """Demux the first video stream of ``path`` (no decoding). Raises ``OSError`` when it cannot."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise OSError(f"{path}: no video stream")
            stream = container.streams.video[0]
            pts, key, discard = [], [], []
            for packet in container.demux(stream):
                if packet.size == 0:  # the flush packet at the end
                    continue
                if packet.pts is None:
                    raise OSError(f"{path}: packets without timestamps")
                pts.append(packet.pts)
                key.append(packet.is_keyframe)
                discard.append(packet.is_discard)
            rate = stream.average_rate or stream.guessed_rate or Fraction(0)
            return StreamIndex(
                pts=np.asarray(pts, dtype=np.int64),
                keyframe=np.asarray(key, dtype=bool),
                discard=np.asarray(discard, dtype=bool),
                declared_frames=int(stream.frames or 0),
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                fps=float(rate),
                codec=str(stream.codec_context.name),
            )
    except av.error.FFmpegError as e:
        raise OSError(f"{path}: {e}") from None


def decode_plan(index: StreamIndex, frames: Iterable[int]) -> tuple[np.ndarray, dict[int, int]]:
    """Packets to decode for ``frames`` (frame numbers), and the pts of each wanted frame.

    Returns ``(needed, targets)``: ``needed`` (P,) bool in decode order; ``targets`` maps the pts
    of each wanted frame that exists to its frame number. A wanted frame needs every packet from
    the keyframe opening its GOP to its own packet; a "leading" frame shown before that keyframe
    (open GOPs) may reference the previous GOP, so it starts one keyframe earlier.
    """
    frame_pts = index.frame_pts
    targets = {int(frame_pts[i]): i for i in sorted(set(frames)) if 0 <= i < len(frame_pts)}
    position = {int(p): d for d, p in enumerate(index.pts)}
    last_key = np.maximum.accumulate(np.where(index.keyframe, np.arange(len(index.pts)), 0))
    needed = np.zeros(len(index.pts), dtype=bool)
    for pts in targets:
        d = position[pts]
        start = int(last_key[d])
        while start > 0 and index.pts[start] > pts:  # leading picture of an open GOP
            start = int(last_key[start - 1])
        needed[start : d + 1] = True
    return needed, targets

"""Decode exactly the requested frames of a video.

``read_frames`` is the one frame reader of the project: detection samples with it and the shard
writer re-decodes the same frames with it, so a crop always comes from the frame its box was found on.

Method (the fastest exact one in ``bench/decode.py``): demux the packet index, then decode with
PyAV only the packets a wanted frame depends on -- from the keyframe opening its GOP to the frame
itself -- and, within that stretch, let the decoder skip frames no other frame references
(``skip_frame=NONREF``) unless they are wanted. Frames come out pixel-identical to OpenCV's
read-every-frame loop (same FFmpeg decoder and BGR conversion, same display rotation). Files whose
packets cannot be planned (no timestamps, no leading keyframe) fall back to OpenCV ``grab()``.
Decoding uses one thread: parallelism comes from one worker process per video.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from common.media.frame_index import StreamIndex, decode_plan, index_video

log = logging.getLogger(__name__)


def read_frames(path: str | Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for each requested index in ascending order; frames are BGR uint8.

    Indices past the end of the stream are not yielded. Raises ``OSError`` when the file cannot be
    opened.
    """
    wanted = sorted(set(int(i) for i in indices if int(i) >= 0))
    try:
        index = index_video(path)
    except OSError as e:
        log.debug("PyAV cannot index %s (%s): reading with OpenCV", path, e)
        index = None
    if index is None or not index.seekable:
        yield from read_frames_opencv(path, wanted)
        return
    yield from read_frames_pyav(path, wanted, index)


def _upright(frame, image: np.ndarray) -> np.ndarray:
    """Apply the stream's display rotation the way OpenCV does (CAP_PROP_ORIENTATION_AUTO)."""
    import cv2

    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    codes = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    return cv2.rotate(image, codes[rotation]) if rotation in codes else image


def read_frames_pyav(
    path: str | Path, wanted: Sequence[int], index: StreamIndex | None = None, skip_nonref: bool = True
) -> Iterator[tuple[int, np.ndarray]]:
    """Planned decoding with PyAV (see the module docstring); ``index`` saves a demux pass."""
    import av

    index = index or index_video(path)
    needed, targets = decode_plan(index, wanted)
    if not targets:
        return
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        codec.thread_count = 1
        position, last_sent = -1, -2

        def outputs(frames) -> Iterator[tuple[int, np.ndarray]]:
            for frame in frames:
                i = targets.get(frame.pts)
                if i is not None:
                    yield i, _upright(frame, frame.to_ndarray(format="bgr24"))

        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                position += 1
                if position >= len(needed) or not needed[position]:
                    continue
                if position != last_sent + 1 and last_sent >= 0:
                    # a gap: drain frames still held for reordering before skipping ahead
                    codec.skip_frame = "DEFAULT"
                    yield from outputs(codec.decode(None))
                    codec.flush_buffers()
                if skip_nonref:
                    codec.skip_frame = "DEFAULT" if packet.pts in targets else "NONREF"
                last_sent = position
                yield from outputs(codec.decode(packet))
            codec.skip_frame = "DEFAULT"
            yield from outputs(codec.decode(None))
        except av.error.FFmpegError as e:
            log.warning("%s: decoding stopped at packet %d: %s", path, position, e)


def read_frames_opencv(path: str | Path, wanted: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """OpenCV, skipping unwanted frames with ``grab()`` (decoded, not converted)."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap = cv2.VideoCapture(str(path))  # another backend (e.g. OpenCV's own GIF reader)
    if not cap.isOpened():
        raise OSError(f"cannot open video {path}")
    try:
        pos = 0
        for index in sorted(set(wanted)):
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


def count_frames(path: str | Path, index: StreamIndex | None = None) -> int:
    """Frames a read-every-frame loop returns: from the packet index (``index``, else demuxed here)
    when it is exact (``StreamIndex.seekable``), else by grabbing every frame with OpenCV.

    The one exact count of the project (crawl's ``--count-frames``, filter's probe); the other
    count is the container's own claim (crawl's default), which may differ by a frame or more.
    """
    if index is None:
        try:
            index = index_video(path)
        except OSError:
            index = None
    if index is not None and index.seekable:
        return index.n_frames
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError(f"cannot open video {path}")
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n

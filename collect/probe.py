"""Probe a downloaded file ourselves: yt-dlp's generic extractor reports no frame facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.media import frames


class ProbeError(Exception):
    """OpenCV cannot read the file as a video."""


def _fourcc_text(fourcc: int) -> str:
    text = int(fourcc).to_bytes(4, "little", signed=False).decode("ascii", "replace")
    text = text.strip("\x00 ").lower()
    return text if text.isprintable() and text.strip() and "\ufffd" not in text else ""


def _codec_from_pyav(path: Path) -> str | None:
    try:
        import av

        with av.open(str(path)) as container:
            return container.streams.video[0].codec_context.name
    except Exception:  # PyAV is only the fallback for an unnamed codec; None says "unknown"
        return None


def probe_video(path: Path, count_frames: bool = False) -> dict[str, Any]:
    """Frames, fps, width, height, duration (s), codec and byte size of ``path``, read with OpenCV.

    ``n_frames`` is the container's frame count (what ``CAP_PROP_FRAME_COUNT`` reports); with
    ``count_frames`` (or when the container has no count) it is ``common.media.frames.count_frames``:
    the frames a read-every-frame loop returns, as filter counts them.
    """
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ProbeError(f"OpenCV cannot open {path.name}")
        n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        codec = _fourcc_text(int(cap.get(cv2.CAP_PROP_FOURCC)))
    finally:
        cap.release()
    if width <= 0 or height <= 0:
        raise ProbeError(f"{path.name} has no video stream OpenCV can decode")
    if count_frames or n_frames <= 0:
        n_frames = frames.count_frames(path)
    return {
        "n_frames": n_frames,
        "fps": fps if fps > 0 else None,
        "width": width,
        "height": height,
        "duration_s": n_frames / fps if fps > 0 else None,
        "codec": codec or _codec_from_pyav(path),
        "bytes": path.stat().st_size,
    }

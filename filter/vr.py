"""Is a video 360° / VR footage? Three signals, any one suffices.

1. Metadata: FFmpeg turns the Spherical Video boxes of MP4 (``sv3d``, the v1 ``uuid`` XML) and
   the Projection / StereoMode elements of Matroska/WebM into SPHERICAL and STEREO3D side data,
   which it attaches to every decoded frame; PyAV shows it on the first frame (``ffprobe``'s
   side data, without needing ffprobe).
2. Shape: 2:1 equirectangular frames (width / height within 1 % of 2).
3. Title: whole-word keywords such as "360" or "VR" (settings ``vr_title_keywords``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

STEREO3D_2D = 0  # AVStereo3DType: the first int of the side data; 0 means plain 2-D video
EQUIRECT_ASPECT = 2.0
ASPECT_TOLERANCE = 0.01


def metadata_signal(path: str | Path) -> str | None:
    """``"spherical"`` or ``"stereo3d"`` when the first frame carries that side data, else None.

    Raises ``OSError`` (PyAV's errors derive from it) when the file cannot be decoded.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            return None
        for frame in container.decode(video=0):
            for side in frame.side_data:
                name = side.type.name
                if name == "SPHERICAL":
                    return "spherical"
                if name == "STEREO3D" and int.from_bytes(bytes(side)[:4], "little") != STEREO3D_2D:
                    return "stereo3d"
            return None
    return None


def is_equirectangular(width: int, height: int) -> bool:
    """True for 2:1 frames (3840x1920, 5760x2880, ...)."""
    return height > 0 and abs(width / height - EQUIRECT_ASPECT) <= ASPECT_TOLERANCE * EQUIRECT_ASPECT


def title_keyword(title: str | None, keywords: Sequence[str]) -> str | None:
    """The first keyword found in ``title`` as a whole word (case-insensitive), else None.

    "Tokyo 360° walk" matches "360"; "1360p" and "avril" do not match "360" and "vr".
    """
    text = (title or "").lower()
    for keyword in keywords:
        if re.search(r"(?<![a-z0-9])" + re.escape(keyword.lower()) + r"(?![a-z0-9])", text):
            return keyword
    return None


def vr_signal(
    meta: str | None, width: int, height: int, title: str | None, keywords: Sequence[str]
) -> str | None:
    """Which signal marks the video as VR (``"metadata:spherical"``, ``"aspect 2:1"``,
    ``"title:360"``), or None for a normal video."""
    if meta:
        return f"metadata:{meta}"
    if is_equirectangular(width, height):
        return "aspect 2:1"
    keyword = title_keyword(title, keywords)
    return f"title:{keyword}" if keyword else None

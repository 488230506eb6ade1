"""The geometry released boxes are cut with: a stated size (:func:`fit`, as without calibration)
or the scale and frame offset calibration chose (:mod:`shards.release.calibrate_video`).

Without calibration (``--calibrate none``, or ``--cut-unverified`` on a video calibration did not
verify): when a size is stated (a ``size`` entry in the pickle, else ``--dets-size WxH``) and
differs from the decoded frame, boxes are scaled to the frame (same aspect ratio only); a video
with any (scaled, rounded) box outside its frame is not at the resolution the boxes were found
at: :class:`Mismatch`, none of its crops is written (``resolution_mismatch``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ASPECT_TOLERANCE = 0.01  # relative difference of the x and y scales still treated as one aspect ratio


class Mismatch(Exception):
    """The decoded frames do not have the size the released boxes were found at."""


def extent(boxes: list[Any]) -> list[float] | None:
    """``[min x1, min y1, max x2, max y2]`` over the usable boxes (checked against the frame)."""
    usable = [b.bbox for b in boxes if b.frame_id >= 1 and b.bbox and all(map(math.isfinite, b.bbox))]
    if not usable:
        return None
    a = np.array(usable)
    return [float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 2].max()), float(a[:, 3].max())]


def fit(context: dict[str, Any], height: int, width: int) -> tuple[float, float, str]:
    """``(x scale, y scale, note)`` mapping the released boxes onto a ``width`` x ``height`` frame.

    Raises :class:`Mismatch` when they cannot be mapped or some box falls outside the frame.
    """
    sx = sy = 1.0
    note = ""
    if context["size"] and tuple(context["size"]) != (width, height):
        w0, h0 = context["size"]
        sx, sy = width / w0, height / h0
        if abs(sx / sy - 1) > ASPECT_TOLERANCE:
            raise Mismatch(
                f"the video is {width}x{height} but the boxes were found at {w0}x{h0} "
                f"(from the {context['size_from']}): another aspect ratio, cannot rescale"
            )
        note = f"boxes rescaled from {w0}x{h0} to {width}x{height}"
    if context["extent"]:
        x1, y1, x2, y2 = (int(v) for v in np.round(np.array(context["extent"]) * [sx, sy, sx, sy]))
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            hint = (
                ""
                if context["size"]
                else "; if the original size is known, state it (--dets-size WxH) to rescale"
            )
            raise Mismatch(
                f"boxes reach x {x1}..{x2}, y {y1}..{y2}, beyond the {width}x{height} frame: the video is "
                f"not at the resolution the boxes were found at{hint}"
            )
    return sx, sy, note


def calibrated_scale(geometry: dict[str, Any]) -> tuple[float, float, str]:
    """``(x scale, y scale, note)`` of a verified calibration (one scale for both axes)."""
    s, offset = geometry["scale"], geometry["offset"]
    notes = [f"boxes rescaled x{s:g} by calibration"] if s != 1 else []
    notes += [f"frames shifted by {offset:+d} by calibration"] if offset else []
    return s, s, "; ".join(notes)
